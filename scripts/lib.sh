#!/usr/bin/env bash
# Shared shell logic for the kit's scripts. Source it; do not run it.
# Every script: `set -euo pipefail`, then `source "$(dirname "$0")/lib.sh"`.

ODK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ODK_ROOT
ODK_VENV="${ODK_VENV:-$ODK_ROOT/.venv}"
ODK_PY="$ODK_VENV/bin/python"
ODK_RUN_DIR="${ODK_RUN_DIR:-$ODK_ROOT/.run}"
export ODK_VENV ODK_PY ODK_RUN_DIR

log() { printf '[odk] %s\n' "$*" >&2; }
warn() { printf '[odk] warning: %s\n' "$*" >&2; }
# die MESSAGE: one line saying what failed and what to do, then exit 1.
die() { printf '[odk] error: %s\n' "$*" >&2; exit 1; }

# ENGINE=docker|podman overrides engine detection; anything else is refused once, here, where the
# error can end the script (detect_engine runs inside $(...), where it could not).
case "${ENGINE:-}" in
    "" | docker | podman) ;;
    *) die "ENGINE must be docker or podman, not '$ENGINE'" ;;
esac

require_venv() {
    [[ -x "$ODK_PY" ]] || die "no virtualenv at $ODK_VENV; run 'make venv' (any make target creates it)"
}

# detect_engine: prints the container engine that really works (docker, then podman),
# honouring ENGINE=docker|podman. Returns 1 (prints nothing) when none works.
detect_engine() {
    local candidates=(docker podman) e
    [[ -z "${ENGINE:-}" ]] || candidates=("$ENGINE")
    for e in "${candidates[@]}"; do
        if command -v "$e" >/dev/null 2>&1 && "$e" info >/dev/null 2>&1; then
            printf '%s\n' "$e"
            return 0
        fi
    done
    return 1
}

# require_engine: like detect_engine, but dies with one clear line when none works.
require_engine() {
    local e why
    if ! e="$(detect_engine)"; then
        if [[ -n "${ENGINE:-}" ]]; then
            why="$("$ENGINE" info 2>&1 >/dev/null | grep -m1 -v '^[[:space:]]*$' || true)"
            die "container engine '$ENGINE' is not usable ('$ENGINE info' fails${why:+: ${why:0:160}}); start it, or unset ENGINE"
        fi
        die "no working container engine (neither 'docker info' nor 'podman info' succeeds); install/start Docker or podman (CI: scripts/setup-podman.sh)"
    fi
    printf '%s\n' "$e"
}

# image_exists ENGINE IMAGE:TAG
image_exists() {
    "$1" image inspect "$2" >/dev/null 2>&1
}

# The Python base image scripts/setup-podman.sh builds without a registry, under a local name of its own.
ODK_LOCAL_BASE_IMAGE="localhost/odk-python:3.11-bookworm"

# python_base_args ENGINE: the build option that sets BASE_IMAGE for a Dockerfile whose default FROM is the
# official python image: $PYTHON_BASE_IMAGE when set, else the local base when ENGINE has it, else nothing
# (the official image, from a registry).
python_base_args() {
    local base="${PYTHON_BASE_IMAGE:-}"
    if [[ -z "$base" ]] && image_exists "$1" "$ODK_LOCAL_BASE_IMAGE"; then
        base="$ODK_LOCAL_BASE_IMAGE"
    fi
    [[ -z "$base" ]] || printf '%s\n' --build-arg "BASE_IMAGE=$base"
}

# build_image ENGINE IMAGE:TAG DOCKERFILE [BUILD-OPTION...]: build from the repository root, passing the
# OCI label build args SOURCE (git remote) and REVISION (git commit). The label values (these two, and
# VERSION / BASE_IMAGE when given as --build-arg) are also set with --label: buildah reuses a cached LABEL
# step when only a build arg changed. With podman, the host's CA bundle is mounted read-only into RUN
# steps (pip through a TLS-intercepting proxy) without baking it into the image.
build_image() {
    local engine="$1" ref="$2" dockerfile="$3"
    shift 3
    local args=(build -f "$ODK_ROOT/$dockerfile" -t "$ref")
    local rev src opt prev=""
    rev="$(git -C "$ODK_ROOT" rev-parse --short HEAD 2>/dev/null || true)"
    src="$(git -C "$ODK_ROOT" remote get-url origin 2>/dev/null || true)"
    if [[ -n "$rev" ]]; then
        args+=(--build-arg "REVISION=$rev" --label "org.opencontainers.image.revision=$rev")
    fi
    if [[ -n "$src" ]]; then
        args+=(--build-arg "SOURCE=$src" --label "org.opencontainers.image.source=$src")
    fi
    for opt in "$@"; do
        if [[ "$prev" == --build-arg ]]; then
            case "$opt" in
                VERSION=*) args+=(--label "org.opencontainers.image.version=${opt#VERSION=}") ;;
                BASE_IMAGE=*) args+=(--label "org.opencontainers.image.base.name=${opt#BASE_IMAGE=}") ;;
            esac
        fi
        prev="$opt"
    done
    if [[ "$engine" == podman && -f /etc/ssl/certs/ca-certificates.crt ]]; then
        args+=(-v /etc/ssl/certs:/etc/ssl/certs:ro)
    fi
    log "$engine build -t $ref -f $dockerfile $*"
    "$engine" "${args[@]}" "$@" "$ODK_ROOT"
}

# state_value FILE KEY: the value of KEY in a key=value state file (never sourced); nothing when absent.
state_value() {
    local file="$1" k v
    [[ -f "$file" ]] || return 0
    while IFS='=' read -r k v; do
        if [[ "$k" == "$2" ]]; then
            printf '%s\n' "$v"
            return 0
        fi
    done <"$file"
    return 0
}

# triton_state KEY: a value recorded by `make triton` in $ODK_RUN_DIR/triton/mode.
triton_state() {
    state_value "$ODK_RUN_DIR/triton/mode" "$1"
}

# pid_alive PID: the process exists and is not a zombie (works for processes of other users too).
pid_alive() {
    local stat
    [[ "$1" =~ ^[0-9]+$ ]] && (($1 > 0)) || return 1
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != Z && "${stat%% *}" != X ]]
}

# recorded_pid FILE: the pid recorded in FILE while that process still runs, else nothing.
recorded_pid() {
    local pid
    pid="$(cat "$1" 2>/dev/null || true)"
    if pid_alive "$pid"; then
        printf '%s\n' "$pid"
    fi
}

# Services record their state the same way: the process that `make <service>-stop` stops writes its pid to
# $ODK_RUN_DIR/<service>/<service>.pid (service_pid_file), a container is recorded in a key=value `mode` file
# (engine=, container=); other key=value files there are settings, not what is stopped.
# service_pid_file SERVICE: where SERVICE's pid is recorded.
service_pid_file() {
    printf '%s\n' "$ODK_RUN_DIR/$1/$1.pid"
}

# stop_process PID WHAT: SIGTERM, wait up to 30 s for PID to end, then SIGKILL its process group (services are
# started with setsid, so PID leads one) or PID alone.
stop_process() {
    local pid="$1" what="$2" i
    kill "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    warn "$what (pid $pid) did not stop within 30 s; killing it"
    kill -9 -- "-$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
}

# stop_service SERVICE WHAT KEPT: stop the process recorded for SERVICE (`make SERVICE`) and remove its pid and
# state files; WHAT names it in the messages, KEPT says what stays behind.
stop_service() {
    local service="$1" what="$2" kept="$3" pid_file pid
    pid_file="$(service_pid_file "$service")"
    pid="$(recorded_pid "$pid_file")"
    if [[ -n "$pid" ]]; then
        stop_process "$pid" "$what"
    fi
    rm -f "$pid_file" "$ODK_RUN_DIR/$service/state"
    if [[ -z "$pid" ]]; then
        log "no $what started by 'make $service' runs ($ODK_RUN_DIR/$service); nothing to stop"
    else
        log "$what (pid $pid) stopped; $kept"
    fi
}

# live_services: one line "<service> <what>" per service whose recorded process or container still runs.
live_services() {
    local dir service pid engine name
    for dir in "$ODK_RUN_DIR"/*/; do
        [[ -d "$dir" ]] || continue
        service="$(basename "$dir")"
        pid="$(recorded_pid "$(service_pid_file "$service")")"
        if [[ -n "$pid" ]]; then
            printf '%s pid %s\n' "$service" "$pid"
            continue
        fi
        engine="$(state_value "$dir/mode" engine)"
        name="$(state_value "$dir/mode" container)"
        if [[ -n "$name" && ("$engine" == docker || "$engine" == podman) ]] \
            && [[ "$("$engine" inspect -f '{{.State.Running}}' "$name" 2>/dev/null || true)" == true ]]; then
            printf '%s %s container %s\n' "$service" "$engine" "$name"
        fi
    done
}

# require_no_live_services WHAT: die with one line naming every live service and its stop target, so that
# WHAT (e.g. 'make clean') never removes the state of a process that still runs.
require_no_live_services() {
    local line running="" targets=""
    while IFS= read -r line; do
        running+="${running:+, }${line%% *} (${line#* })"
        targets+="${targets:+, }'make ${line%% *}-stop'"
    done < <(live_services)
    [[ -z "$running" ]] || die "still running: $running; run $targets first ($1 would lose the state needed to stop it)"
}

# require_operator_sources: what an operator image is built from (run from $ODK_ROOT).
require_operator_sources() {
    compgen -G 'lib/*.whl' >/dev/null || die "no driver wheel in lib/; run 'make wheel' first"
    [[ -f app/__main__.py ]] || die "no operator in app/ (app/__main__.py missing)"
}

# require_studies DIR: DIR is a folder with at least one study the operator would take (a .nii / .nii.gz file,
# searched recursively, not hidden, not a label map *_seg.nii[.gz]); checked before Triton is needed.
require_studies() {
    local dir="$1"
    [[ -d "$dir" ]] || die "INPUT_DIR '$dir' is not a directory; set INPUT_DIR (e.g. local/input, 'make phantoms' fills it)"
    [[ -n "$(find "$dir" \( -type f -o -type l \) \( -iname '*.nii' -o -iname '*.nii.gz' \) ! -name '.*' \
        ! -name '*_seg.nii.gz' ! -name '*_seg.nii' -print -quit 2>/dev/null)" ]] \
        || die "no NIfTI studies (.nii / .nii.gz) under INPUT_DIR '$dir'; put studies there or set INPUT_DIR ('make phantoms' writes the sample study to local/input)"
}

# run_forwarding CMD...: run CMD in its own process group and forward SIGINT/SIGTERM to it, so that a signal
# to this script (Ctrl-C, or make passing on SIGTERM) reaches CMD once and this script gets control back to
# clean up once CMD has ended. Sets FORWARDED_PID (CMD's pid) and ODK_SIGNAL (INT or TERM when one came);
# returns CMD's status (128+n when a signal n ended it).
ODK_SIGNAL=""
FORWARDED_PID=""
run_forwarding() {
    local rc=0
    set -m  # with job control the child keeps SIGINT (a non-interactive shell's background jobs ignore it)
    "$@" &
    FORWARDED_PID=$!
    set +m
    trap 'ODK_SIGNAL=INT; kill -INT "$FORWARDED_PID" 2>/dev/null || true' INT
    trap 'ODK_SIGNAL=TERM; kill -TERM "$FORWARDED_PID" 2>/dev/null || true' TERM
    while :; do
        rc=0
        wait "$FORWARDED_PID" || rc=$?
        kill -0 "$FORWARDED_PID" 2>/dev/null || break  # a trapped signal ends `wait` early; CMD still runs
    done
    trap - INT TERM
    return "$rc"
}

# exit_if_signalled: after run_forwarding, end this script the way the signal would have (130 / 143).
exit_if_signalled() {
    [[ -z "$ODK_SIGNAL" ]] || log "interrupted by SIG$ODK_SIGNAL"
    case "$ODK_SIGNAL" in
        INT) exit 130 ;;
        TERM) exit 143 ;;
    esac
}

# reap_operator_leftovers PID OUTPUT_DIR SINCE [GRPC]: remove what an operator of this repo (pid PID, now
# ended; 0 for a container, whose pids are its own) can leave when it is killed: its shared-memory regions
# (/dev/shm/odk_<PID>_*, and their registration with the Triton at GRPC) and the hidden temporary files of
# its atomic writes in OUTPUT_DIR written since epoch second SINCE.
reap_operator_leftovers() {
    "$ODK_PY" -m kit.triton reap --pid "${1:-0}" --output-dir "$2" --since "$3" --grpc-url "${4:-}" \
        || warn "could not check what the operator left in /dev/shm and $2"
}

# ensure_extra MODULE REQUIREMENTS WHAT: the optional REQUIREMENTS (requirements-torch.txt, requirements-monai.txt)
# installed into the kit's virtualenv when WHAT needs MODULE and it is not there yet; with ODK_NO_INSTALL=1 the
# one line says how instead.
ensure_extra() {
    local module="$1" reqs="$2" what="$3"
    "$ODK_PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is None)" && return 0
    if [[ "${ODK_NO_INSTALL:-0}" == 1 ]]; then
        die "$what needs $module, which is not in $ODK_VENV; install it with '$ODK_PY -m pip install -r $reqs'"
    fi
    log "$what needs $module: installing $reqs into $ODK_VENV (once; ODK_NO_INSTALL=1 says how instead)"
    "$ODK_ROOT/scripts/venv.sh" "$ODK_VENV" "$ODK_ROOT/$reqs"
}
