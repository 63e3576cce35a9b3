#!/usr/bin/env bash
# make train: retrain the demo model on synthetic phantoms (PyTorch, CPU) and export it to MODELS_DIR.
# Training has its own virtualenv (.venv-train: requirements-train.txt) so that torch never enters the
# operator's or the test environment. Extra arguments go to `python -m kit.train.train` (see --help).
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cd "$ODK_ROOT"

train_venv="${TRAIN_VENV:-$ODK_ROOT/.venv-train}"
stamp="$train_venv/.installed-requirements-train.txt"
if [[ ! -f "$stamp" || requirements-train.txt -nt "$stamp" || requirements-dev.txt -nt "$stamp" ]]; then
    "$ODK_ROOT/scripts/venv.sh" "$train_venv" requirements-train.txt
fi
"$train_venv/bin/python" -c 'import torch' 2>/dev/null \
    || die "torch is not importable in $train_venv; delete it and run 'make train' again"
log "training the demo model (CPU; about 20 minutes on 2 cores) -> ${MODELS_DIR:-local/models}"
exec "$train_venv/bin/python" -u -m kit.train.train --models-dir "${MODELS_DIR:-local/models}" "$@"
