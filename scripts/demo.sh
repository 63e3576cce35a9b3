#!/usr/bin/env bash
# make demo: start Triton (embedded on CPU unless a GPU container engine really works), run the operator on
# INPUT_DIR -> OUTPUT_DIR (make run-local, env.list applied), stop what it started, say where the results are.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
require_venv
cd "$ODK_ROOT"

INPUT_DIR="${INPUT_DIR:-local/input}"
OUTPUT_DIR="${OUTPUT_DIR:-local/output}"
export INPUT_DIR OUTPUT_DIR
require_studies "$INPUT_DIR"  # before starting Triton for nothing

started=0
stop_started() {
    if ((started)); then
        "$ODK_ROOT/scripts/triton.sh" stop || warn "could not stop Triton; run 'make triton-stop'"
    fi
}
trap stop_started EXIT

# SIGINT/SIGTERM: passed on to the step that runs; then the EXIT trap stops the Triton started here.
if "$ODK_ROOT/scripts/triton.sh" status >/dev/null 2>&1; then
    log "using the Triton that is already running ('make triton-status' for details)"
else
    started=1
    rc=0
    run_forwarding "$ODK_ROOT/scripts/triton.sh" start || rc=$?
    exit_if_signalled
    ((rc == 0)) || exit "$rc"
fi

rc=0
run_forwarding "$ODK_ROOT/scripts/run-local.sh" || rc=$?
exit_if_signalled
"$ODK_PY" -m kit.summary "$OUTPUT_DIR" --truth-dir tests/data || true
if ((rc != 0)); then
    die "the operator failed (exit $rc); its log above names each study that failed and why"
fi
