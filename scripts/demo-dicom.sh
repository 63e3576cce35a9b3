#!/usr/bin/env bash
# make demo-dicom: the whole DICOM chain on the sample. Starts the PACS (make pacs), Triton (make triton) and
# the listener (make listen) unless they run already, sends the sample CT series to the listener with dcmtk
# storescu, waits for the SEG the pipeline sends back to the PACS, prints its UIDs, the PACS URL to look at
# and Dice against the sample's truth, then stops what it started (also on failure or Ctrl-C).
# Variables: those of make pacs / listen / triton; DICOM_SERIES (the folder sent; default the sample in
# local/input-dicom, written from local/input when missing), DEMO_TIMEOUT (600 s to wait for the SEG).
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
require_venv
cd "$ODK_ROOT"

SAMPLE_NIFTI="local/input/synthetic_phantom_001.nii.gz"
DICOM_SERIES="${DICOM_SERIES:-local/input-dicom/synthetic_phantom_001}"
DEMO_TIMEOUT="${DEMO_TIMEOUT:-600}"
PACS_HTTP_PORT="${PACS_HTTP_PORT:-8042}"
LISTEN_AET="${LISTEN_AET:-ODK}"
LISTEN_PORT="${LISTEN_PORT:-11112}"
export PACS_HTTP_PORT LISTEN_AET LISTEN_PORT
command -v storescu >/dev/null 2>&1 || die "dcmtk's storescu is not installed; run 'scripts/setup-dicom.sh'"

started=()
stop_started() {
    local i
    for ((i = ${#started[@]} - 1; i >= 0; i--)); do
        "$ODK_ROOT/scripts/${started[i]}.sh" stop || warn "could not stop ${started[i]}; run 'make ${started[i]}-stop'"
    done
}
trap stop_started EXIT
trap 'exit 130' INT TERM

if [[ ! -d "$DICOM_SERIES" ]]; then
    [[ -f "$SAMPLE_NIFTI" ]] || die "no sample series in $DICOM_SERIES and no $SAMPLE_NIFTI to write it from; run 'make phantoms'"
    log "writing the sample DICOM series to $DICOM_SERIES"
    "$ODK_PY" -m kit.phantom dicom "$SAMPLE_NIFTI" "$DICOM_SERIES" >&2
fi

if "$ODK_ROOT/scripts/pacs.sh" status >/dev/null 2>&1; then
    log "using the PACS that is already running ('make pacs-status')"
else
    started+=(pacs)
    "$ODK_ROOT/scripts/pacs.sh" start
fi
pacs_url="http://127.0.0.1:$(grep -m1 '^http_port=' "$ODK_RUN_DIR/pacs/state" | cut -d= -f2)"
if "$ODK_ROOT/scripts/triton.sh" status >/dev/null 2>&1; then
    log "using the Triton that is already running ('make triton-status')"
else
    started+=(triton)
    "$ODK_ROOT/scripts/triton.sh" start
fi
if "$ODK_ROOT/scripts/listen.sh" status >/dev/null 2>&1; then
    log "using the listener that is already running ('make listen-status')"
    LISTEN_AET="$(grep -m1 '^aet=' "$ODK_RUN_DIR/listen/state" | cut -d= -f2)"
    LISTEN_PORT="$(grep -m1 '^port=' "$ODK_RUN_DIR/listen/state" | cut -d= -f2)"
else
    started+=(listen)
    "$ODK_ROOT/scripts/listen.sh" start
fi

known="$ODK_RUN_DIR/listen/.demo-known-seg"
"$ODK_PY" -m kit.dicom.seg_check --pacs-url "$pacs_url" --series-dir "$DICOM_SERIES" --known "$known" --list-known
if [[ -s "$known" ]] && grep -q . "$known"; then
    # The listener makes no new job of a study it received unchanged, and a re-run of a series would be an
    # instance of the same SEG series: what the PACS holds is the answer.
    rm -f "$known"
    log "the PACS already holds a SEG of this study (sent before); not sending it again: 'make clean' or another DICOM_SERIES for a new round trip"
    "$ODK_PY" -m kit.dicom.seg_check --pacs-url "$pacs_url" --series-dir "$DICOM_SERIES" --existing \
        --truth tests/data/synthetic_phantom_001_truth.nii.gz || exit 1
    exit 0
fi
log "storescu +sd -aec $LISTEN_AET 127.0.0.1 $LISTEN_PORT $DICOM_SERIES"
storescu +sd +r -aet ODKDEMO -aec "$LISTEN_AET" 127.0.0.1 "$LISTEN_PORT" "$DICOM_SERIES" \
    || die "storescu could not send $DICOM_SERIES to $LISTEN_AET at 127.0.0.1:$LISTEN_PORT (see above)"
log "sent; waiting for the SEG in the PACS (the listener's job: 'make listen-status', $ODK_RUN_DIR/listen/jobs)"
"$ODK_PY" -m kit.dicom.seg_check --pacs-url "$pacs_url" --series-dir "$DICOM_SERIES" --known "$known" \
    --truth tests/data/synthetic_phantom_001_truth.nii.gz --jobs-dir "$ODK_RUN_DIR/listen/jobs" --timeout "$DEMO_TIMEOUT" \
    || exit 1
rm -f "$known"
