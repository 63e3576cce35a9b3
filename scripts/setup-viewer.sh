#!/usr/bin/env bash
# What the results viewer (make view) and its browser test need:
#   1. Debian's chromium (headless, WebGL through its software renderer) for the browser test,
#   2. the viewer's front-end packages (NiiVue, playwright-core) from kit/view/package-lock.json (npm ci).
# Idempotent: each step is skipped when already done. Env: ODK_VIEW_NO_BROWSER=1 skips chromium.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "no apt-get: install $* with this system's package manager"
    log "installing $* (apt)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; then
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
            || die "apt-get install $* failed; install it by hand"
    fi
}

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    apt_install nodejs npm
fi
if [[ "${ODK_VIEW_NO_BROWSER:-0}" != 1 ]] && [[ ! -x /usr/bin/chromium ]]; then
    apt_install chromium
fi
"$ODK_ROOT/scripts/view.sh" install
