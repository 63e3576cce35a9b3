#!/usr/bin/env bash
# make run-pipeline: run a whole PIPELINE locally on INPUT_DIR -> OUTPUT_DIR/<operator>/<output-name>,
# as containers (RUNTIME=container) or on the host for operators built from this repo (RUNTIME=host);
# RUNTIME=auto picks containers when an engine works and every image exists. RUNTIME=kube renders the
# Kubernetes manifests and plays their container specs with `podman kube play` (KUBE_TRITON_IMAGE: the
# Triton image to run, e.g. the CPU one of scripts/triton-cpu; see docs/kubernetes.md).
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
    kube) ;;
    *) die "RUNTIME must be auto, container, host or kube, not '$runtime'" ;;
esac
[[ -f "$pipeline" ]] || die "PIPELINE=$pipeline is not a file; e.g. make run-pipeline PIPELINE=def/two-operator-pipeline.yml"
mkdir -p "${OUTPUT_DIR:-local/output}"
if [[ "$runtime" == kube ]]; then
    podman info >/dev/null 2>&1 || die "RUNTIME=kube needs a working podman (podman kube play); CI: scripts/setup-podman.sh"
    command -v catatonit >/dev/null 2>&1 || [[ -x /usr/libexec/podman/catatonit ]] \
        || die "RUNTIME=kube needs catatonit for podman kube play; run scripts/setup-kube.sh"
    # Triton: the CPU image of scripts/triton-cpu/build.sh unless KUBE_TRITON_IMAGE names another.
    pytriton="$(sed -n 's/^nvidia-pytriton==//p' requirements-dev.txt)"
    export KUBE_TRITON_IMAGE="${KUBE_TRITON_IMAGE:-localhost/odk-triton-cpu:pytriton-$pytriton}"
    exec "$ODK_PY" -m kit.deploy.play "$pipeline" \
        --input-dir "${INPUT_DIR:-local/input}" --output-dir "${OUTPUT_DIR:-local/output}" \
        --models-dir "${MODELS_DIR:-local/models}" --log-dir "$ODK_RUN_DIR/kube-play"
fi
exec "$ODK_PY" -m kit.pipeline.run "$pipeline" \
    --input-dir "${INPUT_DIR:-local/input}" --output-dir "${OUTPUT_DIR:-local/output}" \
    --runtime "$runtime" --engine "$engine" --image "${IMAGE:-clara/simple-operator}"
