#!/usr/bin/env bash
# make bench: the operator (embedded Triton, shm and gRPC) vs. the in-process limit vs. a MONAI pipeline,
# on cached CT phantoms. Runs in its own virtualenv (.venv-bench: the dev requirements + torch + MONAI).
# Then the DICOM figures: reader vs dcm2niix and the SEG writer (kit/bench/dicom.py), storescu -> SEG in
# Orthanc latency (kit/bench/dicom_latency.py); BENCH_DICOM=0 skips them. One run, one JSON (latest.json).
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
if [[ "${BENCH_DICOM:-1}" == 0 ]]; then
    extra_args+=(--dicom-repeats 0 --dicom-latency-repeats 0)
fi
"$venv/bin/python" -m kit.bench --model-dir "$model" "${extra_args[@]}" "$@"
