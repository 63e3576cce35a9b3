#!/usr/bin/env bash
# make listen | listen-stop | listen-status: the DICOM listener (a Storage SCP, kit/dicom/listen.py) in the
# background; every complete study it receives runs PIPELINE as a job in $ODK_RUN_DIR/listen/jobs/<job>/.
# make listen-retry|listen-resend|listen-discard JOB=<job>, make listen-prune: its kept jobs (kit/dicom/jobctl.py).
#   scripts/listen.sh start|stop|status|retry|resend|discard|prune
# Variables: LISTEN_AET (ODK), LISTEN_HOST (127.0.0.1), LISTEN_PORT (11112), LISTEN_IDLE_S (5),
# LISTEN_ALLOWED_AETS (calling AE titles accepted; empty: all), LISTEN_WORKERS (1), LISTEN_PARAMS (NAME=VALUE
# overrides of pipeline parameters for every job, space-separated), PIPELINE
# (def/liver-dicom-pipeline.yml), DICOM_DESTINATION (AET@host:port, comma-separated; default: the running `make pacs`),
# RUNTIME/ENGINE/IMAGE (as for `make run-pipeline`), LISTEN_READY_TIMEOUT (30 s); limits: LISTEN_MAX_ASSOCIATIONS (16),
# LISTEN_MAX_PER_CALLER (4), LISTEN_MAX_CONNECTIONS (64), LISTEN_ACSE_TIMEOUT_S (10), LISTEN_DIMSE_TIMEOUT_S (30),
# LISTEN_NETWORK_TIMEOUT_S (30), LISTEN_MIN_FREE_MB (100); LISTEN_KEEP_DAYS (7; 0: keep every job),
# LISTEN_STOP_GRACE_S (3: seconds a running pipeline gets after SIGTERM at stop), JOB.
# Job folders hold patient data: the listener and its jobs run with umask 077 (folders 0700, files 0600).
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

LISTEN_AET="${LISTEN_AET:-ODK}"
LISTEN_HOST="${LISTEN_HOST:-127.0.0.1}"
LISTEN_PORT="${LISTEN_PORT:-11112}"
LISTEN_IDLE_S="${LISTEN_IDLE_S:-5}"
LISTEN_ALLOWED_AETS="${LISTEN_ALLOWED_AETS:-}"
LISTEN_WORKERS="${LISTEN_WORKERS:-1}"
LISTEN_READY_TIMEOUT="${LISTEN_READY_TIMEOUT:-30}"
LISTEN_PARAMS="${LISTEN_PARAMS:-}"
LISTEN_KEEP_DAYS="${LISTEN_KEEP_DAYS:-7}"
LISTEN_STOP_GRACE_S="${LISTEN_STOP_GRACE_S:-3}"
PIPELINE="${PIPELINE:-def/liver-dicom-pipeline.yml}"
DICOM_DESTINATION="${DICOM_DESTINATION:-}"
LISTEN_MAX_ASSOCIATIONS="${LISTEN_MAX_ASSOCIATIONS:-16}"
LISTEN_MAX_PER_CALLER="${LISTEN_MAX_PER_CALLER:-4}"
LISTEN_MAX_CONNECTIONS="${LISTEN_MAX_CONNECTIONS:-64}"
LISTEN_ACSE_TIMEOUT_S="${LISTEN_ACSE_TIMEOUT_S:-10}"
LISTEN_DIMSE_TIMEOUT_S="${LISTEN_DIMSE_TIMEOUT_S:-30}"
LISTEN_NETWORK_TIMEOUT_S="${LISTEN_NETWORK_TIMEOUT_S:-30}"
LISTEN_MIN_FREE_MB="${LISTEN_MIN_FREE_MB:-100}"
LISTEN_RUN_DIR="$ODK_RUN_DIR/listen"
LISTEN_PID_FILE="$(service_pid_file listen)"

listen_pid() { recorded_pid "$LISTEN_PID_FILE"; }

cmd_start() {
    local var pid runtime engine=""
    for var in LISTEN_PORT LISTEN_WORKERS LISTEN_READY_TIMEOUT LISTEN_MAX_ASSOCIATIONS LISTEN_MAX_PER_CALLER \
        LISTEN_MAX_CONNECTIONS LISTEN_MIN_FREE_MB; do
        [[ "${!var}" =~ ^[0-9]+$ ]] || die "$var must be a number, not '${!var}'"
    done
    for var in LISTEN_IDLE_S LISTEN_ACSE_TIMEOUT_S LISTEN_DIMSE_TIMEOUT_S LISTEN_NETWORK_TIMEOUT_S; do
        [[ "${!var}" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "$var must be a number of seconds, not '${!var}'"
    done
    [[ "$LISTEN_KEEP_DAYS" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "LISTEN_KEEP_DAYS must be a number of days (0: keep every job), not '$LISTEN_KEEP_DAYS'"
    [[ "$LISTEN_STOP_GRACE_S" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "LISTEN_STOP_GRACE_S must be a number of seconds, not '$LISTEN_STOP_GRACE_S'"
    [[ -f "$PIPELINE" ]] || die "PIPELINE=$PIPELINE is not a file; e.g. make listen PIPELINE=def/liver-dicom-pipeline.yml"
    if [[ -n "$(listen_pid)" ]]; then
        die "a listener started by 'make listen' is already running (pid $(listen_pid)); run 'make listen-stop' first"
    fi
    runtime="${RUNTIME:-auto}"
    case "$runtime" in
        container) engine="$(require_engine)" ;;
        auto) engine="$(detect_engine || true)" ;;
        host) ;;
        *) die "RUNTIME must be auto, container or host, not '$runtime'" ;;
    esac
    local params=() p
    for p in $LISTEN_PARAMS; do
        [[ "$p" == *=* ]] || die "LISTEN_PARAMS: '$p' is not NAME=VALUE"
        params+=(--param "$p")
    done
    umask 077  # the run dir, the jobs and what their pipelines write: this user's only
    mkdir -p "$LISTEN_RUN_DIR"
    rm -f "$LISTEN_PID_FILE" "$LISTEN_RUN_DIR/state"
    local logfile="$LISTEN_RUN_DIR/listen.log" offset
    offset="$(stat -c %s "$logfile" 2>/dev/null || echo 0)"
    setsid "$ODK_PY" -u -m kit.dicom.listen serve --run-dir "$LISTEN_RUN_DIR" --pacs-run-dir "$ODK_RUN_DIR/pacs" \
        --aet "$LISTEN_AET" --host "$LISTEN_HOST" --port "$LISTEN_PORT" --idle-s "$LISTEN_IDLE_S" \
        --pipeline "$PIPELINE" --destination "$DICOM_DESTINATION" --allowed-aets "$LISTEN_ALLOWED_AETS" \
        --workers "$LISTEN_WORKERS" --runtime "$runtime" --engine "$engine" --image "${IMAGE:-clara/simple-operator}" \
        --max-associations "$LISTEN_MAX_ASSOCIATIONS" --max-per-caller "$LISTEN_MAX_PER_CALLER" \
        --max-connections "$LISTEN_MAX_CONNECTIONS" --acse-timeout "$LISTEN_ACSE_TIMEOUT_S" \
        --dimse-timeout "$LISTEN_DIMSE_TIMEOUT_S" --network-timeout "$LISTEN_NETWORK_TIMEOUT_S" \
        --min-free-mb "$LISTEN_MIN_FREE_MB" \
        --keep-days "$LISTEN_KEEP_DAYS" --stop-grace-s "$LISTEN_STOP_GRACE_S" \
        "${params[@]}" >>"$logfile" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "$pid" >"$LISTEN_PID_FILE"
    if ! "$ODK_PY" -m kit.dicom.listen wait --run-dir "$LISTEN_RUN_DIR" --pid "$pid" --timeout "$LISTEN_READY_TIMEOUT" 2>/dev/null; then
        local why
        why="$(tail -c +"$((offset + 1))" "$logfile" | grep -m1 '^\[odk\] error:' | sed 's/^\[odk\] error: //' || true)"
        stop_process "$pid" listener
        rm -f "$LISTEN_PID_FILE"
        die "${why:-the listener did not answer C-ECHO within ${LISTEN_READY_TIMEOUT}s} (log: $LISTEN_RUN_DIR/listen.log)"
    fi
    log "listener ready: AE $LISTEN_AET at $LISTEN_HOST:$LISTEN_PORT, pipeline $PIPELINE, jobs in $LISTEN_RUN_DIR/jobs"
    tail -c +"$((offset + 1))" "$logfile" | grep -E 'results to|no DICOM_DESTINATION|warning:' \
        | sed 's/^\[odk\] [0-9:]* /[odk] /' >&2 || true
}

# The listener closes its port and aborts open associations on SIGTERM, ends its running jobs' process groups
# (SIGKILL after LISTEN_STOP_GRACE_S) and fails them, keeping their instances; queued jobs stay queued.
cmd_stop() {
    stop_service listen listener "jobs stay in $LISTEN_RUN_DIR/jobs"
}

# jobctl COMMAND: retry|resend|discard JOB=<job>, or prune; one line, non-zero when it cannot.
cmd_jobctl() {
    local command="$1"
    if [[ "$command" != prune && -z "${JOB:-}" ]]; then
        die "give the job: make listen-$command JOB=<job> ('make listen-status' lists the jobs)"
    fi
    umask 077
    exec "$ODK_PY" -m kit.dicom.jobctl "$command" ${JOB:+"$JOB"} --run-dir "$LISTEN_RUN_DIR" \
        --pacs-run-dir "$ODK_RUN_DIR/pacs" --destination "$DICOM_DESTINATION" --keep-days "$LISTEN_KEEP_DAYS"
}

require_venv
cd "$ODK_ROOT"
case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) exec "$ODK_PY" -m kit.dicom.listen status --run-dir "$LISTEN_RUN_DIR" ;;
    retry | resend | discard | prune) cmd_jobctl "$1" ;;
    *) die "usage: scripts/listen.sh start|stop|status|retry|resend|discard|prune" ;;
esac
