#!/usr/bin/env bash
# make build: the operator image IMAGE:TAG (defaults clara/simple-operator:0.1.0) from Dockerfile.
# Env: IMAGE, TAG, ENGINE=docker|podman (default: the engine that works), PYTHON_BASE_IMAGE (default: the
# local base of scripts/setup-podman.sh when present, else the Dockerfile's official python image).
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cd "$ODK_ROOT"

image="${IMAGE:-clara/simple-operator}"
tag="${TAG:-0.1.0}"
engine="$(require_engine)"
require_operator_sources

SECONDS=0
mapfile -t base_args < <(python_base_args "$engine")
build_image "$engine" "$image:$tag" Dockerfile --build-arg "VERSION=$tag" "${base_args[@]}" \
    || die "building $image:$tag with $engine failed (see above)"
log "built $image:$tag with $engine in ${SECONDS}s; run it with 'make run-local RUNTIME=container'"
