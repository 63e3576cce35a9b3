#!/usr/bin/env bash
# make pacs | pacs-stop | pacs-status: Debian's Orthanc as a local PACS, a plain process with a configuration
# of ours ($ODK_RUN_DIR/pacs/config.json; storage in $ODK_RUN_DIR/pacs/db). Orthanc has no bind option: it
# listens on every interface; its REST API answers only this machine (RemoteAccessAllowed false).
#   scripts/pacs.sh start|stop|status
# Variables: PACS_DICOM_PORT (4242), PACS_HTTP_PORT (8042), PACS_AET (ORTHANC), LISTEN_AET/LISTEN_PORT (the
# listener, registered as a modality), PACS_ALLOWED_AETS (STORESCU,FINDSCU,ECHOSCU: the other calling AE titles it
# accepts, each AET[@host[:port]], host 127.0.0.1 when not given), DICOM_CALLING_AET (ODK: register-results'),
# PACS_READY_TIMEOUT (30 s). DICOM from any other AE title, or from another host, is rejected at association.
# PACS_TLS=1: its DICOM port speaks TLS only, with the certificates of $ODK_RUN_DIR/tls (made here with openssl
# when missing: ca.crt, server.crt/.key, client.crt/.key); callers need a client certificate of that CA.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

PACS_DICOM_PORT="${PACS_DICOM_PORT:-4242}"
PACS_HTTP_PORT="${PACS_HTTP_PORT:-8042}"
PACS_AET="${PACS_AET:-ORTHANC}"
LISTEN_AET="${LISTEN_AET:-ODK}"
LISTEN_PORT="${LISTEN_PORT:-11112}"
PACS_READY_TIMEOUT="${PACS_READY_TIMEOUT:-30}"
PACS_ALLOWED_AETS="${PACS_ALLOWED_AETS-STORESCU,FINDSCU,ECHOSCU}"
DICOM_CALLING_AET="${DICOM_CALLING_AET:-ODK}"
PACS_TLS="${PACS_TLS:-0}"
TLS_DIR="$ODK_RUN_DIR/tls"
PACS_RUN_DIR="$ODK_RUN_DIR/pacs"
PACS_PID_FILE="$(service_pid_file pacs)"

# pacs_pid: the recorded pid when that process still runs, else nothing.
pacs_pid() { recorded_pid "$PACS_PID_FILE"; }

cmd_start() {
    local var pid
    for var in PACS_DICOM_PORT PACS_HTTP_PORT LISTEN_PORT PACS_READY_TIMEOUT; do
        [[ "${!var}" =~ ^[0-9]+$ ]] || die "$var must be a number, not '${!var}'"
    done
    command -v Orthanc >/dev/null 2>&1 || die "Orthanc is not installed; run 'scripts/setup-dicom.sh' (apt: orthanc, dcmtk, dicom3tools)"
    if [[ -n "$(pacs_pid)" ]]; then
        die "a PACS started by 'make pacs' is already running (pid $(pacs_pid)); run 'make pacs-stop' first"
    fi
    [[ "$PACS_TLS" == 0 || "$PACS_TLS" == 1 ]] || die "PACS_TLS must be 0 or 1, not '$PACS_TLS'"
    rm -f "$PACS_PID_FILE" "$PACS_RUN_DIR/state"
    local config tls_args=()
    if [[ "$PACS_TLS" == 1 ]]; then
        "$ODK_PY" -m kit.dicom.tls certs --dir "$TLS_DIR" >/dev/null || exit 1
        tls_args=(--tls-dir "$TLS_DIR")
    fi
    config="$("$ODK_PY" -m kit.dicom.pacs config --run-dir "$PACS_RUN_DIR" --dicom-port "$PACS_DICOM_PORT" \
        --http-port "$PACS_HTTP_PORT" --aet "$PACS_AET" --listen-aet "$LISTEN_AET" --listen-port "$LISTEN_PORT" \
        --allowed-aets "$PACS_ALLOWED_AETS" --results-aet "$DICOM_CALLING_AET" "${tls_args[@]}")" || exit 1
    setsid Orthanc "$config" >"$PACS_RUN_DIR/orthanc.log" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "$pid" >"$PACS_PID_FILE"
    printf '%s\n' "pid=$pid" "aet=$PACS_AET" "dicom_port=$PACS_DICOM_PORT" "http_port=$PACS_HTTP_PORT" \
        "tls=$PACS_TLS" >"$PACS_RUN_DIR/state"
    if ! "$ODK_PY" -m kit.dicom.pacs wait --run-dir "$PACS_RUN_DIR" --http-port "$PACS_HTTP_PORT" \
        --pid "$pid" --timeout "$PACS_READY_TIMEOUT"; then
        stop_process "$pid" "Orthanc PACS"
        rm -f "$PACS_PID_FILE" "$PACS_RUN_DIR/state"
        exit 1
    fi
    log "PACS (Orthanc) ready: AE $PACS_AET at 127.0.0.1:$PACS_DICOM_PORT, web UI http://127.0.0.1:$PACS_HTTP_PORT/app/explorer.html"
    if [[ "$PACS_TLS" == 1 ]]; then
        log "DICOM TLS only on port $PACS_DICOM_PORT: callers trust $TLS_DIR/ca.crt and present a certificate of" \
            "that CA (register-results: DICOM_TLS_CA=$TLS_DIR/ca.crt DICOM_TLS_CERT=$TLS_DIR/client.crt DICOM_TLS_KEY=$TLS_DIR/client.key)"
    fi
    local known="$LISTEN_AET"
    [[ "$DICOM_CALLING_AET" == "$LISTEN_AET" ]] || known+=", $DICOM_CALLING_AET"
    log "note: Orthanc listens on all interfaces (it has no bind option); it accepts DICOM only from the AE titles it" \
        "knows, each from its host ($known, PACS_ALLOWED_AETS=$PACS_ALLOWED_AETS), its REST API from this machine only"
}

# Orthanc takes ~3.5 s to stop.
cmd_stop() {
    stop_service pacs "Orthanc PACS" "its studies stay in $PACS_RUN_DIR/db"
}

require_venv
cd "$ODK_ROOT"
case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) exec "$ODK_PY" -m kit.dicom.pacs status --run-dir "$PACS_RUN_DIR" ;;
    *) die "usage: scripts/pacs.sh start|stop|status" ;;
esac
