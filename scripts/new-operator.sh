#!/usr/bin/env bash
# make new-operator NAME=<name> [KIND=segmentation|classification|passthrough]: a runnable operator skeleton
# (app/<name>.py, def/<name>-pipeline.yml, env/<name>.list, tests/test_operator_<name>.py; see
# docs/writing-an-operator.md). Its pipeline runs the image IMAGE:TAG. A bad or taken NAME is refused in one
# line, nothing written.
# Env: NAME, KIND (default segmentation), IMAGE, TAG, ODK_SCAFFOLD_ROOT (the checkout to write into; default
# this one).
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
require_venv

[[ -n "${NAME:-}" ]] || die "NAME is not set; e.g. make new-operator NAME=lesion_check KIND=classification"
cd "$ODK_ROOT"
exec "$ODK_PY" -m kit.scaffold "$NAME" --kind "${KIND:-segmentation}" --root "${ODK_SCAFFOLD_ROOT:-$ODK_ROOT}" \
    --image "${IMAGE:-clara/simple-operator}" --tag "${TAG:-0.1.0}"
