#!/usr/bin/env bash
# make bench: the operator (embedded Triton, shm and gRPC) vs. the in-process limit vs. a MONAI pipeline,
# on cached CT phantoms. Runs in its own virtualenv (.venv-bench: the dev requirements + torch + MONAI).
# Then the DICOM end-to-end latency (kit/bench/dicom_latency.py; BENCH_DICOM=0 skips it).
# BENCH_ARGS passes options to `python -m kit.bench` (e.g. BENCH_ARGS="--sizes small --repeats 3").
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cd "$ODK_ROOT"

venv="$ODK_ROOT/.venv-bench"
reqs="requirements-bench.txt"
stamp="$venv/.installed-$reqs"
if [[ ! -f "$stamp" || "$reqs" -nt "$stamp" || requirements-dev.txt -nt "$stamp" || requirements.txt -nt "$stamp" ]]; then
    "$ODK_ROOT/scripts/venv.sh" "$venv" "$reqs"
fi
model="${MODELS_DIR:-local/models}/segmentation_liver_v1"
[[ -f "$model/config.pbtxt" ]] || die "no model at $model; run 'make train' (or set MODELS_DIR to a model repository)"

read -r -a extra_args <<<"${BENCH_ARGS:-}"
"$venv/bin/python" -m kit.bench --model-dir "$model" "${extra_args[@]}" "$@"
# DICOM: storescu -> listener -> liver pipeline -> SEG in Orthanc, vs the operator alone.
[[ "${BENCH_DICOM:-1}" == 0 ]] || "$venv/bin/python" -m kit.bench.dicom_latency --models-dir "${MODELS_DIR:-local/models}"
