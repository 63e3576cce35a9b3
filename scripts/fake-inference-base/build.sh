#!/usr/bin/env bash
# Build the local inference-like base image used to test `make wrap` (no registry needed).
# Env: FAKE_INFERENCE_IMAGE (default localhost/odk-inference-base:test), ENGINE.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR/..
source "$(dirname "$0")/../lib.sh"

ref="${FAKE_INFERENCE_IMAGE:-localhost/odk-inference-base:test}"
engine="$(require_engine)"
build_image "$engine" "$ref" scripts/fake-inference-base/Dockerfile \
    || die "building $ref with $engine failed (see above)"
log "built $ref; wrap the operator onto it with 'make wrap BASE_IMAGE=$ref'"
