#!/usr/bin/env bash
# make run-local: the operator on INPUT_DIR -> OUTPUT_DIR with env.list applied; OPERATOR=<name>: the
# operator app/<name>.py (python -u -m app.<name>, made by `make new-operator`) with env/<name>.list.
#   RUNTIME=container  the image IMAGE:TAG: INPUT_DIR mounted read-only at env.list's input path,
#                      OUTPUT_DIR read-write at its output path, --env-file env.list, as the invoking user.
#   RUNTIME=host       the same operator from .venv (python -u -m app), the container paths rewritten
#                      to INPUT_DIR / OUTPUT_DIR.
#   RUNTIME=auto       container when the image exists and an engine works, else host.
# Triton: the one `make triton` started (.run/triton/mode), else env.list's NVIDIA_TRITON_GRPCURI; an env file
# that names no TRITON_MODEL_NAME is an operator without Triton (KIND=passthrough): no Triton is needed.
# Env: RUNTIME, IMAGE, TAG, INPUT_DIR, OUTPUT_DIR, ENGINE, OPERATOR, ENV_LIST (default env.list, with OPERATOR
# env/<name>.list); a variable of the env file that is set in the environment overrides the file.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

runtime="${RUNTIME:-auto}"
image="${IMAGE:-clara/simple-operator}:${TAG:-0.1.0}"
input_dir="${INPUT_DIR:-local/input}"
output_dir="${OUTPUT_DIR:-local/output}"
operator="${OPERATOR:-}"
module=app
env_list="${ENV_LIST:-$ODK_ROOT/env.list}"

case "$runtime" in auto | container | host) ;; *) die "RUNTIME must be auto, container or host, not '$runtime'" ;; esac
if [[ -n "$operator" ]]; then
    [[ "$operator" =~ ^[a-z][a-z0-9_]*$ ]] || die "OPERATOR='$operator' is not an operator name (app/<name>.py, lowercase)"
    [[ -f "$ODK_ROOT/app/$operator.py" ]] || die "no operator app/$operator.py; make one with 'make new-operator NAME=$operator'"
    module="app.$operator"
    env_list="${ENV_LIST:-$ODK_ROOT/env/$operator.list}"
fi
[[ -f "$env_list" ]] || die "no $env_list; it holds the operator's environment (see docs/configuration.md)"
require_studies "$input_dir"
input_dir="$(cd "$input_dir" && pwd)"
mkdir -p "$output_dir"
output_dir="$(cd "$output_dir" && pwd)"

# --- env.list --------------------------------------------------------------------------------------
declare -A envs=()
env_keys=()
overrides=()
while IFS= read -r line || [[ -n "$line" ]]; do
    # A documented but commented-out variable (`# KEY=...`) that the caller sets is passed on too.
    if [[ "$line" =~ ^#[[:space:]]*([A-Z][A-Z0-9_]*)= ]]; then
        key="${BASH_REMATCH[1]}"
        if [[ -n "${!key+x}" && ! -v "envs[$key]" ]]; then
            env_keys+=("$key")
            envs[$key]="${!key}"
            overrides+=("$key")
        fi
        continue
    fi
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    [[ "$line" =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || die "$env_list: '$line' is not KEY=VALUE"
    key="${BASH_REMATCH[1]}"
    [[ -v "envs[$key]" ]] || env_keys+=("$key")
    envs[$key]="${BASH_REMATCH[2]}"
    # A variable set by the caller wins over env.list.
    if [[ -n "${!key+x}" ]]; then
        envs[$key]="${!key}"
        overrides+=("$key")
    fi
done <"$env_list"

# entry_path LIST: the path of the only name:/path entry of a ;-separated list.
entry_path() {
    local var="$1" list="${envs[$1]:-}"
    [[ -n "$list" ]] || die "$env_list sets no $var (e.g. $var=payload:/input)"
    [[ "$list" != *";"* ]] || die "$var has several entries; run-local maps one folder onto one entry"
    [[ "$list" == *:/* ]] || die "$var='$list' is not name:/absolute/path"
    printf '%s\n' "/${list#*:/}"
}
in_path="$(entry_path NVIDIA_CLARA_INPUTPATHS)"
out_path="$(entry_path NVIDIA_CLARA_OUTPUTPATHS)"

# --- where to run ----------------------------------------------------------------------------------
engine=""
if [[ "$runtime" != host ]]; then
    if engine="$(detect_engine)" && image_exists "$engine" "$image"; then
        runtime=container
    elif [[ "$runtime" == container ]]; then
        [[ -n "$engine" ]] || require_engine >/dev/null
        die "image $image is not built (not in $engine's images); run 'make build' (or set IMAGE/TAG)"
    else
        if [[ -n "$engine" ]]; then
            log "auto: image $image not built for $engine -> RUNTIME=host"
        else
            log "auto: no working container engine -> RUNTIME=host"
        fi
        runtime=host
    fi
fi

# --- Triton ----------------------------------------------------------------------------------------
triton_mode="$(triton_state mode)"
grpc_port="$(triton_state grpc_port)"
if [[ -n "$triton_mode" ]]; then
    host_uri="127.0.0.1:$grpc_port"
else
    host_uri="${envs[NVIDIA_TRITON_GRPCURI]:-localhost:8001}"
    host_uri="${host_uri#grpc://}"
fi
# Reachable from this host (the container network is checked through the published port).
tcp_open() {
    local hp="$1" host port
    host="${hp%:*}" port="${hp##*:}"
    [[ "$host" == localhost ]] && host=127.0.0.1
    timeout 3 bash -c ": >/dev/tcp/$host/$port" 2>/dev/null
}
uses_triton=1
[[ -v "envs[TRITON_MODEL_NAME]" ]] || uses_triton=0
if ((uses_triton)); then
    tcp_open "$host_uri" || die "Triton not reachable at $host_uri; run 'make triton'"
fi

SECONDS=0
if [[ "$runtime" == host ]]; then
    require_venv
    envs[NVIDIA_CLARA_INPUTPATHS]="${envs[NVIDIA_CLARA_INPUTPATHS]%%:*}:$input_dir"
    envs[NVIDIA_CLARA_OUTPUTPATHS]="${envs[NVIDIA_CLARA_OUTPUTPATHS]%%:*}:$output_dir"
    exports=()
    for key in "${env_keys[@]}"; do exports+=("$key=${envs[$key]}"); done
    ((uses_triton)) && exports+=("NVIDIA_TRITON_GRPCURI=$host_uri")
    log "RUNTIME=host: $ODK_PY -u -m $module, $input_dir -> $output_dir$( ((uses_triton)) && echo ", Triton $host_uri")"
    rc=0
    started_at="$(date +%s)"
    cd "$ODK_ROOT"
    run_forwarding env "${exports[@]}" "$ODK_PY" -u -m "$module" || rc=$?  # env execs python: same pid
    reap_operator_leftovers "$FORWARDED_PID" "$output_dir" "$started_at" "$host_uri"
    exit_if_signalled
else
    # Triton container on a user-defined network: join it and use the container's name; otherwise
    # (embedded on this host, or published ports only) share the host's network and IPC namespace, so
    # 127.0.0.1 reaches it and TRITON_TRANSPORT=auto can use system shared memory as on the host.
    net_args=(--network host --ipc host)
    uri="$host_uri"
    if [[ "$triton_mode" == container && "$(triton_state engine)" == "$engine" ]]; then
        tname="$(triton_state container)"
        # shellcheck disable=SC2016  # a Go template, not a shell expansion
        tnet="$("$engine" inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$tname" \
            2>/dev/null | awk '{print $1}')"
        if [[ -n "$tnet" && "$tnet" != podman && "$tnet" != bridge && "$tnet" != host ]]; then
            net_args=(--network "$tnet")
            uri="$tname:8001"
        fi
    fi
    # Outputs belong to the invoking user: run as their uid:gid (rootless podman: keep the uid mapped;
    # rootless docker: container root is the user already).
    user_args=(--user "$(id -u):$(id -g)")
    if [[ "$engine" == podman && "$(podman info --format '{{.Host.Security.Rootless}}' 2>/dev/null)" == true ]]; then
        user_args=(--userns keep-id --user "$(id -u):$(id -g)")
    elif [[ "$engine" == docker && "$(docker info --format '{{.SecurityOptions}}' 2>/dev/null)" == *rootless* ]]; then
        user_args=(--user 0:0)
    fi
    env_args=()
    for key in "${overrides[@]}"; do env_args+=(-e "$key=${envs[$key]}"); done
    ((uses_triton)) && env_args+=(-e "NVIDIA_TRITON_GRPCURI=$uri")
    name="odk-run-local-$$"
    # The image's CMD is the segmentation operator; another operator of app/ is its module.
    command_args=()
    [[ -z "$operator" ]] || command_args=(python -u -m "$module")
    trap '"$engine" rm -f "$name" >/dev/null 2>&1 || true' EXIT
    log "RUNTIME=container: $image ($engine)${command_args[*]:+ ${command_args[*]}}, $input_dir -> $in_path (ro), $output_dir -> $out_path$( ((uses_triton)) && echo ", Triton $uri")"
    rc=0
    started_at="$(date +%s)"
    run_forwarding "$engine" run --rm --name "$name" --label org.odk.role=run-local "${user_args[@]}" \
        "${net_args[@]}" --env-file "$env_list" "${env_args[@]}" \
        -v "$input_dir:$in_path:ro" -v "$output_dir:$out_path" "$image" "${command_args[@]}" || rc=$?
    reap_operator_leftovers 0 "$output_dir" "$started_at"
    exit_if_signalled
fi
if ((rc != 0)); then
    die "the operator failed (exit $rc) after ${SECONDS}s; its log is above"
fi
log "done in ${SECONDS}s ($runtime): results in $output_dir"
