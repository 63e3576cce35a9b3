#!/usr/bin/env bash
# Build the CPU Triton image (scripts/triton-cpu/Dockerfile) for `make triton TRITON_MODE=container`.
# Env: TRITON_CPU_IMAGE (default localhost/odk-triton-cpu:pytriton-<pinned nvidia-pytriton>), ENGINE,
# PYTHON_BASE_IMAGE (as for scripts/build.sh).
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR/..
source "$(dirname "$0")/../lib.sh"
cd "$ODK_ROOT"

pytriton="$(sed -n 's/^nvidia-pytriton==//p' requirements-dev.txt)"
[[ -n "$pytriton" ]] || die "requirements-dev.txt pins no nvidia-pytriton version"
ref="${TRITON_CPU_IMAGE:-localhost/odk-triton-cpu:pytriton-$pytriton}"
engine="$(require_engine)"
SECONDS=0
mapfile -t base_args < <(python_base_args "$engine")
build_image "$engine" "$ref" scripts/triton-cpu/Dockerfile --build-arg "VERSION=pytriton-$pytriton" "${base_args[@]}" \
    || die "building $ref with $engine failed (see above)"
log "built $ref in ${SECONDS}s; run it with 'make triton TRITON_MODE=container TRITON_IMAGE=$ref TRITON_GPUS=none'"
