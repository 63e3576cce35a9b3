#!/usr/bin/env bash
# Build the local inference-like base image used to test `make wrap` (no registry needed).
# Env: FAKE_INFERENCE_IMAGE (default localhost/odk-inference-base:test), ENGINE, PYTHON_BASE_IMAGE.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR/../..
source "$(dirname "$0")/../../scripts/lib.sh"

ref="${FAKE_INFERENCE_IMAGE:-localhost/odk-inference-base:test}"
engine="$(require_engine)"
mapfile -t base_args < <(python_base_args "$engine")
build_image "$engine" "$ref" tests/fake-inference-base/Dockerfile "${base_args[@]}" \
    || die "building $ref with $engine failed (see above)"
log "built $ref; wrap the operator onto it with 'make wrap BASE_IMAGE=$ref'"
