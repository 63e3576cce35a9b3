#!/usr/bin/env bash
# make triton | triton-stop | triton-status: a real Triton Inference Server on MODELS_DIR, either the
# NGC container (GPU, the ODK's way) or embedded on CPU (the tritonserver of nvidia-pytriton + onnxruntime).
#   scripts/triton.sh start|stop|status
# Variables (see docs/triton.md): TRITON_MODE=auto|container|embedded, TRITON_HTTP_PORT/TRITON_GRPC_PORT/
# TRITON_METRICS_PORT, MODELS_DIR, TRITON_IMAGE, TRITON_GPUS, TRITON_READY_TIMEOUT, TRITON_SKIP_UNSERVABLE,
# TRITON_CONTAINER, TRITON_NETWORK, TRITON_SHM_SIZE, TRITON_ULIMITS, TRITON_ALLOW_CLIENT_SHM, TRITON_ADDRESS.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

TRITON_MODE="${TRITON_MODE:-auto}"
TRITON_IMAGE="${TRITON_IMAGE:-nvcr.io/nvidia/tritonserver:26.05-py3}"
TRITON_HTTP_PORT="${TRITON_HTTP_PORT:-8000}"
TRITON_GRPC_PORT="${TRITON_GRPC_PORT:-8001}"
TRITON_METRICS_PORT="${TRITON_METRICS_PORT:-8002}"
MODELS_DIR="${MODELS_DIR:-local/models}"
TRITON_READY_TIMEOUT="${TRITON_READY_TIMEOUT:-120}"
TRITON_SKIP_UNSERVABLE="${TRITON_SKIP_UNSERVABLE:-0}"
TRITON_GPUS="${TRITON_GPUS:-all}"                 # all | none | a --gpus value such as device=0
TRITON_CONTAINER="${TRITON_CONTAINER:-odk-triton}"
TRITON_NETWORK="${TRITON_NETWORK-odk-net}"        # empty: the engine's default network
TRITON_SHM_SIZE="${TRITON_SHM_SIZE:-1g}"          # /dev/shm size when TRITON_IPC is empty
TRITON_IPC="${TRITON_IPC-host}"                   # host: clients share system shared memory with the server
# NVIDIA's recommended ulimits for the GPU image; a CPU image (TRITON_GPUS=none) runs with the engine's.
if [[ "$TRITON_GPUS" == "none" ]]; then
    TRITON_ULIMITS="${TRITON_ULIMITS-}"
else
    TRITON_ULIMITS="${TRITON_ULIMITS-memlock=-1 stack=67108864}"
fi
TRITON_ALLOW_CLIENT_SHM="${TRITON_ALLOW_CLIENT_SHM:-auto}"  # auto (from the image tag) | true | false
TRITON_ADDRESS="${TRITON_ADDRESS:-127.0.0.1}"     # host address the server listens on / its ports are published on (0.0.0.0: all)
TRITON_RUN_DIR="$ODK_RUN_DIR/triton"
TRITON_LABEL="org.odk.role=triton"

clear_state() { rm -f "$TRITON_RUN_DIR/mode" "$(service_pid_file triton)"; }

# whole_in VALUE MIN MAX: VALUE is a whole number from MIN to MAX (no sign, no nan/inf).
whole_in() {
    [[ "$1" =~ ^[0-9]{1,6}$ ]] || return 1
    ((10#$1 >= $2 && 10#$1 <= $3))
}

# check_port_vars: ports 1..65535, TRITON_READY_TIMEOUT whole seconds 1..86400 (a wait must end).
check_port_vars() {
    local var
    for var in TRITON_HTTP_PORT TRITON_GRPC_PORT TRITON_METRICS_PORT; do
        whole_in "${!var}" 1 65535 || die "$var must be a port number 1..65535, not '${!var}'"
    done
    whole_in "$TRITON_READY_TIMEOUT" 1 86400 \
        || die "TRITON_READY_TIMEOUT must be whole seconds 1..86400, not '$TRITON_READY_TIMEOUT'"
}

# models_abs: MODELS_DIR as an absolute path (it must exist).
models_abs() {
    [[ -d "$MODELS_DIR" ]] || die "model repository '$MODELS_DIR' does not exist; set MODELS_DIR or run 'make train'"
    (cd "$MODELS_DIR" && pwd)
}

host_sees_gpu() {
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '
}

# container_sees_gpu ENGINE: the GPU must really appear inside a container (podman ignores --gpus).
container_sees_gpu() {
    timeout 120 "$1" run --rm --gpus all "$TRITON_IMAGE" nvidia-smi -L 2>/dev/null | grep -q '^GPU '
}

ensure_image() {
    local engine="$1"
    image_exists "$engine" "$TRITON_IMAGE" && return 0
    log "pulling $TRITON_IMAGE (the first time takes a while)"
    "$engine" pull "$TRITON_IMAGE" >&2
}

# pick_mode: prints "embedded" or "container ENGINE".
pick_mode() {
    local engine
    case "$TRITON_MODE" in
        embedded) echo embedded ;;
        container)
            engine="$(require_engine)" || exit 1
            echo "container $engine"
            ;;
        auto)
            if ! engine="$(detect_engine)"; then
                log "auto: no working container engine -> embedded Triton on CPU"
                echo embedded
            elif ! host_sees_gpu; then
                log "auto: no NVIDIA GPU on this host -> embedded Triton on CPU"
                echo embedded
            elif ! ensure_image "$engine"; then
                warn "auto: cannot get $TRITON_IMAGE -> embedded Triton on CPU"
                echo embedded
            elif ! container_sees_gpu "$engine"; then
                warn "auto: no GPU visible inside a $engine container (GPU runtime / nvidia-container-toolkit?) -> embedded"
                echo embedded
            else
                echo "container $engine"
            fi
            ;;
        *) die "TRITON_MODE must be auto, container or embedded, not '$TRITON_MODE'" ;;
    esac
}

# allow_client_shm: "true" when the server needs --allow-client-shm=true for client system shared memory
# (Triton >= 2.69, i.e. NGC tags >= 26.05); tags that are not YY.MM get it only when asked for.
allow_client_shm() {
    case "$TRITON_ALLOW_CLIENT_SHM" in
        true | false) echo "$TRITON_ALLOW_CLIENT_SHM"; return 0 ;;
        auto) ;;
        *) die "TRITON_ALLOW_CLIENT_SHM must be auto, true or false, not '$TRITON_ALLOW_CLIENT_SHM'" ;;
    esac
    local tag="${TRITON_IMAGE##*:}"
    if [[ "$tag" =~ ^([0-9]{2})\.([0-9]{2}) ]] && ((10#${BASH_REMATCH[1]} * 100 + 10#${BASH_REMATCH[2]} >= 2605)); then
        echo true
    else
        echo false
    fi
}

# network_args ENGINE: --network <TRITON_NETWORK>, creating the user-defined network when needed, so
# operator containers on it reach the server as <TRITON_CONTAINER>:8001. Nothing when it cannot be had.
network_args() {
    local engine="$1"
    [[ -n "$TRITON_NETWORK" ]] || return 0
    if "$engine" network inspect "$TRITON_NETWORK" >/dev/null 2>&1 \
        || "$engine" network create "$TRITON_NETWORK" >/dev/null 2>&1; then
        printf '%s\n' "--network" "$TRITON_NETWORK"
    else
        warn "cannot create network $TRITON_NETWORK with $engine; using the default network (ports are published on the host)"
    fi
}

start_container() {
    local engine="$1" models state running
    models="$(models_abs)"
    if state="$("$engine" inspect -f '{{.State.Running}}' "$TRITON_CONTAINER" 2>/dev/null)"; then
        if [[ "$state" == "true" ]]; then
            die "a container named $TRITON_CONTAINER is already running; run 'make triton-stop' (or '$engine rm -f $TRITON_CONTAINER'), or set TRITON_CONTAINER"
        fi
        running="$("$engine" inspect -f '{{index .Config.Labels "org.odk.role"}}' "$TRITON_CONTAINER" 2>/dev/null || true)"
        [[ "$running" == "triton" ]] \
            || die "a stopped container named $TRITON_CONTAINER exists and was not made by 'make triton'; remove it or set TRITON_CONTAINER"
        "$engine" rm -f "$TRITON_CONTAINER" >/dev/null
    fi
    "$ODK_PY" -m kit.triton check-ports --http-port "$TRITON_HTTP_PORT" --grpc-port "$TRITON_GRPC_PORT" \
        --metrics-port "$TRITON_METRICS_PORT" || exit 1
    if [[ "$TRITON_GPUS" != "none" ]] && ! host_sees_gpu; then
        warn "TRITON_GPUS=$TRITON_GPUS but nvidia-smi sees no GPU on this host (a CPU image needs TRITON_GPUS=none)"
    fi
    local shm
    shm="$(allow_client_shm)"

    local args=(run -d --name "$TRITON_CONTAINER" --label "$TRITON_LABEL")
    [[ "$TRITON_GPUS" == "none" ]] || args+=(--gpus "$TRITON_GPUS")
    # Client system shared memory needs the server in the clients' IPC namespace; the size of a private
    # /dev/shm applies only without it (engines refuse --shm-size with --ipc=host).
    if [[ -n "$TRITON_IPC" ]]; then
        args+=(--ipc="$TRITON_IPC")
    else
        args+=(--shm-size="$TRITON_SHM_SIZE")
    fi
    local u
    for u in $TRITON_ULIMITS; do args+=(--ulimit "$u"); done
    local net
    mapfile -t net < <(network_args "$engine")
    args+=("${net[@]}")
    args+=(-p "$TRITON_ADDRESS:$TRITON_HTTP_PORT:8000" -p "$TRITON_ADDRESS:$TRITON_GRPC_PORT:8001"
          -p "$TRITON_ADDRESS:$TRITON_METRICS_PORT:8002")
    args+=(-v "$models:/models:ro" "$TRITON_IMAGE" tritonserver --model-repository=/models)
    [[ "$shm" == "false" ]] || args+=(--allow-client-shm=true)

    log "starting $TRITON_IMAGE as container $TRITON_CONTAINER ($engine)"
    local err
    if ! err="$("$engine" "${args[@]}" 2>&1 >/dev/null)"; then
        printf '%s\n' "$err" >&2
        "$engine" rm -f "$TRITON_CONTAINER" >/dev/null 2>&1 || true
        if [[ "$err" == *rlimit* ]]; then
            die "$engine cannot apply the ulimits ($TRITON_ULIMITS) here; run with TRITON_ULIMITS= to use the engine's defaults"
        fi
        die "'$engine run' of $TRITON_IMAGE failed (see above)"
    fi

    # The run state has one writer (kit.triton.state), for the embedded server and the container alike.
    "$ODK_PY" -m kit.triton record-container --run-dir "$TRITON_RUN_DIR" --models-dir "$models" \
        --http-port "$TRITON_HTTP_PORT" --grpc-port "$TRITON_GRPC_PORT" --metrics-port "$TRITON_METRICS_PORT" \
        --engine "$engine" --container "$TRITON_CONTAINER" --image "$TRITON_IMAGE"
    if ! "$ODK_PY" -m kit.triton wait --run-dir "$TRITON_RUN_DIR" --timeout "$TRITON_READY_TIMEOUT" \
        --engine "$engine" --container "$TRITON_CONTAINER"; then
        log "last lines of the container's log:"
        "$engine" logs --tail 30 "$TRITON_CONTAINER" >&2 2>&1 || true
        "$engine" logs "$TRITON_CONTAINER" >"$TRITON_RUN_DIR/triton.log" 2>&1 || true
        "$engine" rm -f "$TRITON_CONTAINER" >/dev/null 2>&1 || true
        clear_state
        die "Triton container did not become ready within ${TRITON_READY_TIMEOUT}s (log above; full log in $TRITON_RUN_DIR/triton.log)"
    fi
    log "Triton ($TRITON_IMAGE) ready: gRPC 127.0.0.1:$TRITON_GRPC_PORT, HTTP http://127.0.0.1:$TRITON_HTTP_PORT"
    if ((${#net[@]})); then
        log "containers on network $TRITON_NETWORK reach it as $TRITON_CONTAINER:8001"
    fi
}

start_embedded() {
    local models args
    models="$(models_abs)"
    # torch only for a TorchScript model (requirements-torch.txt), never for ONNX-only repositories.
    if "$ODK_PY" -m kit.triton runtimes --models-dir "$models" | grep -qx torch; then
        ensure_extra torch requirements-torch.txt "a TorchScript model in $MODELS_DIR"
    fi
    args=(--models-dir "$models" --http-port "$TRITON_HTTP_PORT" --grpc-port "$TRITON_GRPC_PORT"
        --metrics-port "$TRITON_METRICS_PORT" --address "$TRITON_ADDRESS"
        --run-dir "$TRITON_RUN_DIR" --timeout "$TRITON_READY_TIMEOUT")
    [[ "$TRITON_SKIP_UNSERVABLE" != "1" ]] || args+=(--skip-unservable)
    "$ODK_PY" -m kit.triton start "${args[@]}"
}

cmd_start() {
    check_port_vars
    allow_client_shm >/dev/null
    local running
    running="$(triton_state mode)"
    if [[ -n "$running" ]]; then
        if is_running; then
            die "a Triton started by 'make triton' is already running ($running); run 'make triton-stop' first"
        fi
        if [[ "$running" == embedded ]]; then  # removes what a killed server left (workspace, shm)
            "$ODK_PY" -m kit.triton stop --run-dir "$TRITON_RUN_DIR" >/dev/null 2>&1 || true
        fi
        clear_state  # left over from a server that is gone
    fi
    reap_shm
    local mode
    mode="$(pick_mode)"
    case "$mode" in
        embedded) start_embedded ;;
        container\ *) start_container "${mode#container }" ;;
    esac
}

# is_running: the Triton recorded in the run directory still runs (embedded process or container).
is_running() {
    local rc=0 engine
    if [[ "$(triton_state mode)" == "container" ]]; then
        engine="$(triton_state engine)"
        [[ "$engine" == docker || "$engine" == podman ]] || return 1
        [[ "$("$engine" inspect -f '{{.State.Running}}' "$(triton_state container)" 2>/dev/null || true)" == "true" ]]
        return
    fi
    "$ODK_PY" -m kit.triton status --run-dir "$TRITON_RUN_DIR" >/dev/null 2>&1 || rc=$?
    ((rc != 3))
}

# reap_shm: unlink the /dev/shm segments (PyTriton's psm_*, the operator's odk_*) of servers and operators that
# died without cleaning up (no living process maps them), saying how much was freed.
reap_shm() {
    "$ODK_PY" -m kit.triton reap-shm || true
}

cmd_stop() {
    local mode engine name
    mode="$(triton_state mode)"
    case "$mode" in
        "") log "no Triton started by 'make triton' is recorded in $TRITON_RUN_DIR; nothing to stop" ;;
        embedded) "$ODK_PY" -m kit.triton stop --run-dir "$TRITON_RUN_DIR" ;;
        container)
            engine="$(triton_state engine)"
            name="$(triton_state container)"
            [[ "$engine" == docker || "$engine" == podman ]] || die "unknown engine '$engine' in $TRITON_RUN_DIR/mode"
            if "$engine" inspect -f '{{index .Config.Labels "org.odk.role"}}' "$name" 2>/dev/null | grep -qx triton; then
                "$engine" logs "$name" >"$TRITON_RUN_DIR/triton.log" 2>&1 || true
                "$engine" rm -f "$name" >/dev/null
                log "Triton container $name stopped and removed"
            else
                log "container $name is gone already"
            fi
            clear_state
            ;;
        *) die "unknown mode '$mode' in $TRITON_RUN_DIR/mode; delete that file" ;;
    esac
    reap_shm
}

cmd_status() {
    local mode
    mode="$(triton_state mode)"
    if [[ "$mode" == "container" ]] && ! is_running; then
        echo "triton: not running (container $(triton_state container) is not running); 'make triton-stop' cleans up, then 'make triton' starts it"
        exit 3
    fi
    exec "$ODK_PY" -m kit.triton status --run-dir "$TRITON_RUN_DIR"
}

require_venv
cd "$ODK_ROOT"
case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) die "usage: scripts/triton.sh start|stop|status" ;;
esac
