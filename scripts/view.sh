#!/usr/bin/env bash
# make view | view-stop | view-status: the results viewer, a local web page over OUTPUT_DIR (NiiVue).
#   scripts/view.sh start|stop|status|install
# Env: OUTPUT_DIR (default local/output), INPUT_DIR (default local/input: where the CT of each study is),
#      VIEW_PORT (default 8090), VIEW_HOST (more names the browser may reach it by, e.g. behind a tunnel),
#      ODK_RUN_DIR (pid in $ODK_RUN_DIR/view). It listens on 127.0.0.1 only and answers only its own Host names.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

VIEW_DIR="$ODK_ROOT/kit/view"
VIEW_PORT="${VIEW_PORT:-8090}"
STAMP="$VIEW_DIR/node_modules/.package-lock.json"

# install: npm ci of the pinned lockfile when node_modules is missing or older than the lockfile.
cmd_install() {
    if [[ -f "$STAMP" && -f "$VIEW_DIR/node_modules/@niivue/niivue/dist/index.js" \
        && ! "$VIEW_DIR/package-lock.json" -nt "$STAMP" ]]; then
        return 0
    fi
    command -v npm >/dev/null 2>&1 || die "npm not found: the viewer's packages come from npm; run scripts/setup-viewer.sh"
    log "installing the viewer's packages (npm ci in kit/view)"
    local out
    if ! out="$(cd "$VIEW_DIR" && npm ci --no-audit --no-fund --loglevel=error 2>&1)"; then
        printf '%s\n' "$out" | tail -n 5 >&2
        die "npm ci in kit/view failed (see above); check that the npm registry is reachable"
    fi
}

cmd_start() {
    if ! [[ "$VIEW_PORT" =~ ^[0-9]{1,5}$ ]] || ((10#$VIEW_PORT < 1 || 10#$VIEW_PORT > 65535)); then
        die "VIEW_PORT must be a port number (1-65535), not '$VIEW_PORT'"
    fi
    cmd_install
    exec "$ODK_PY" -m kit.view --run-dir "$ODK_RUN_DIR" serve --output-dir "${OUTPUT_DIR:-local/output}" \
        --input-dir "${INPUT_DIR:-local/input}" --host 127.0.0.1 --port "$VIEW_PORT" --allow-host "${VIEW_HOST:-}"
}

cd "$ODK_ROOT"
case "${1:-}" in
    start) require_venv && cmd_start ;;
    stop) require_venv && exec "$ODK_PY" -m kit.view --run-dir "$ODK_RUN_DIR" stop ;;
    status) require_venv && exec "$ODK_PY" -m kit.view --run-dir "$ODK_RUN_DIR" status ;;
    install) cmd_install ;;  # needs no virtualenv (CI installs before `make test` creates it)
    *) die "usage: scripts/view.sh start|stop|status|install" ;;
esac
