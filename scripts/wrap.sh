#!/usr/bin/env bash
# make wrap BASE_IMAGE=<inference image>: the operator layered onto an existing image (Dockerfile.wrap).
# Env: BASE_IMAGE (required), WRAP_IMAGE (default IMAGE:TAG-wrap, e.g. clara/simple-operator:0.1.0-wrap),
#      IMAGE, TAG, ENGINE=docker|podman.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cd "$ODK_ROOT"

base="${BASE_IMAGE:-}"
[[ -n "$base" ]] || die "BASE_IMAGE is required: make wrap BASE_IMAGE=<inference image>, e.g. BASE_IMAGE=nvcr.io/nvidia/tritonserver:26.05-py3"
tag="${TAG:-0.1.0}"
ref="${WRAP_IMAGE:-${IMAGE:-clara/simple-operator}:$tag-wrap}"
engine="$(require_engine)"
require_operator_sources

SECONDS=0
build_image "$engine" "$ref" Dockerfile.wrap --build-arg "BASE_IMAGE=$base" --build-arg "VERSION=$tag" \
    || die "wrapping the operator onto $base with $engine failed (see above; Dockerfile.wrap says what the base needs)"
log "built $ref on $base with $engine in ${SECONDS}s; run it with 'make run-local RUNTIME=container IMAGE=${ref%:*} TAG=${ref##*:}'"
