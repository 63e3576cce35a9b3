#!/usr/bin/env bash
# make train: retrain a demo model on synthetic phantoms (PyTorch, CPU) and export it to MODELS_DIR.
# TRAIN_MODEL picks which: liver (default; segmentation_liver_v1, kit.train.train), classifier
# (classification_lesion_v1, kit.train.classifier) or slices (segmentation_liver_2d_v1, kit.train.slices).
# Training has its own virtualenv (.venv-train: requirements-train.txt) so that torch never enters the
# operator's or the test environment. Extra arguments go to the module (see its --help).
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cd "$ODK_ROOT"

case "${TRAIN_MODEL:-liver}" in
    liver) module=kit.train.train what="the 3D liver model (about 20 minutes on 2 cores)" ;;
    classifier) module=kit.train.classifier what="the lesion classifier (about 10 minutes on 2 cores)" ;;
    slices) module=kit.train.slices what="the 2D slice model (about 12 minutes on 2 cores)" ;;
    *) die "TRAIN_MODEL=${TRAIN_MODEL} is not a demo model; use liver, classifier or slices" ;;
esac

train_venv="${TRAIN_VENV:-$ODK_ROOT/.venv-train}"
stamp="$train_venv/.installed-requirements-train.txt"
if [[ ! -f "$stamp" || requirements-train.txt -nt "$stamp" || requirements-dev.txt -nt "$stamp" ]]; then
    "$ODK_ROOT/scripts/venv.sh" "$train_venv" requirements-train.txt
fi
"$train_venv/bin/python" -c 'import torch' 2>/dev/null \
    || die "torch is not importable in $train_venv; delete it and run 'make train' again"
log "training $what on the CPU -> ${MODELS_DIR:-local/models}"
exec "$train_venv/bin/python" -u -m "$module" --models-dir "${MODELS_DIR:-local/models}" "$@"
