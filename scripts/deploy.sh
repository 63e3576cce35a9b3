#!/usr/bin/env bash
# make deploy: validate PIPELINE, copy MODELS_DIR to CLARA_MODELS_DIR, then with the clara CLI create the
# pipeline, create a job (JOB_NAME, INPUT_DIR as payload) and start it. DRY_RUN=1 prints the commands.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
require_venv
cd "$ODK_ROOT"

export PIPELINE="${PIPELINE:-def/one-operator-pipeline.yml}"
[[ -f "$PIPELINE" ]] || die "PIPELINE=$PIPELINE is not a file; e.g. make deploy PIPELINE=def/one-operator-pipeline.yml"
exec "$ODK_PY" -m kit.pipeline.deploy --run-dir "$ODK_RUN_DIR/deploy"
