#!/usr/bin/env bash
# make run-pipeline: run a whole PIPELINE locally on INPUT_DIR -> OUTPUT_DIR/<operator>/<output-name>,
# as containers (RUNTIME=container) or on the host for operators built from this repo (RUNTIME=host);
# RUNTIME=auto picks containers when an engine works and every image exists.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
require_venv
cd "$ODK_ROOT"

pipeline="${PIPELINE:-def/one-operator-pipeline.yml}"
runtime="${RUNTIME:-auto}"
engine=""
case "$runtime" in
    container) engine="$(require_engine)" ;;
    auto) engine="$(detect_engine || true)" ;;
    host) ;;
    *) die "RUNTIME must be auto, container or host, not '$runtime'" ;;
esac
[[ -f "$pipeline" ]] || die "PIPELINE=$pipeline is not a file; e.g. make run-pipeline PIPELINE=def/two-operator-pipeline.yml"
mkdir -p "${OUTPUT_DIR:-local/output}"
exec "$ODK_PY" -m kit.pipeline.run "$pipeline" \
    --input-dir "${INPUT_DIR:-local/input}" --output-dir "${OUTPUT_DIR:-local/output}" \
    --runtime "$runtime" --engine "$engine" --image "${IMAGE:-clara/simple-operator}"
