#!/usr/bin/env bash
# make model-config | make import-bundle: a model entry MODELS_DIR/<NAME>/{config.pbtxt, 1/model.*} written from
# a model file (ONNX or TorchScript) or from a MONAI bundle, checked as `make triton` checks it (see
# docs/own-model.md).
#   scripts/model-entry.sh config   MODEL=file NAME=name [INPUT_DIMS= SPACING_MM= HU_WINDOW= LABELS= LABEL_NESTING=
#                                   OUTPUT_ACTIVATION= MAX_BATCH_SIZE=]
#   scripts/model-entry.sh bundle   BUNDLE=dir [NAME=name ALLOW_UNSUPPORTED=1 FORMAT=torchscript|onnx]
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
require_venv
cd "$ODK_ROOT"

MODELS_DIR="${MODELS_DIR:-local/models}"

cmd_config() {
    local model="${MODEL:-}" name="${NAME:-}"
    [[ -n "$model" && -n "$name" ]] \
        || die "give the model file and the entry's name: make model-config MODEL=path/to/model.onnx|.pt NAME=<name>"
    [[ -f "$model" ]] || die "MODEL=$model is not a file"
    case "${model,,}" in
        *.pt | *.ts | *.pth | *.torchscript) ensure_extra torch requirements-torch.txt "a TorchScript model" ;;
    esac
    # --opt=VALUE: a value may start with '-' (HU_WINDOW=-200,300).
    local args=("--model=$model" "--name=$name" "--models-dir=$MODELS_DIR"
        "--input-dims=${INPUT_DIMS:-}" "--max-batch-size=${MAX_BATCH_SIZE:-4}"
        "--spacing-mm=${SPACING_MM:-}" "--hu-window=${HU_WINDOW:-}" "--labels=${LABELS:-}"
        "--label-nesting=${LABEL_NESTING:-}" "--output-activation=${OUTPUT_ACTIVATION:-}")
    [[ "${MAX_BATCH_SIZE:-4}" =~ ^[0-9]{1,6}$ ]] || die "MAX_BATCH_SIZE must be a whole number >= 1, not '${MAX_BATCH_SIZE}'"
    exec "$ODK_PY" -m kit.modelentry config "${args[@]}"
}

cmd_bundle() {
    local bundle="${BUNDLE:-}"
    [[ -n "$bundle" ]] || die "give the bundle's folder: make import-bundle BUNDLE=path/to/bundle [NAME=<name>]"
    [[ -d "$bundle" ]] || die "BUNDLE=$bundle is not a folder (a MONAI bundle: configs/metadata.json, configs/inference.json, models/model.ts)"
    ensure_extra monai requirements-monai.txt "a MONAI bundle"
    local args=("--bundle=$bundle" "--name=${NAME:-}" "--models-dir=$MODELS_DIR" "--format=${FORMAT:-torchscript}")
    [[ "${ALLOW_UNSUPPORTED:-0}" != 1 ]] || args+=(--allow-unsupported)
    exec "$ODK_PY" -m kit.modelentry bundle "${args[@]}"
}

case "${1:-}" in
    config) cmd_config ;;
    bundle) cmd_bundle ;;
    *) die "usage: scripts/model-entry.sh config|bundle" ;;
esac
