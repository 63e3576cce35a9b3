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

# triton_state KEY: a value recorded by `make triton` in $ODK_RUN_DIR/triton/mode (key=value lines; never
# sourced); prints nothing when there is no such state or key.
triton_state() {
    local file="$ODK_RUN_DIR/triton/mode" k v
    [[ -f "$file" ]] || return 0
    while IFS='=' read -r k v; do
        if [[ "$k" == "$1" ]]; then
            printf '%s\n' "$v"
            return 0
        fi
    done <"$file"
    return 0
}

# require_operator_sources: what an operator image is built from (run from $ODK_ROOT).
require_operator_sources() {
    compgen -G 'lib/*.whl' >/dev/null || die "no driver wheel in lib/; run 'make wheel' first"
    [[ -f app/__main__.py ]] || die "no operator in app/ (app/__main__.py missing)"
}
