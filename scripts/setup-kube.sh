#!/usr/bin/env bash
# What `make run-pipeline RUNTIME=kube` needs beyond podman (scripts/setup-podman.sh): catatonit, the init
# process `podman kube play` puts in every pod. Idempotent: returns at once when it is there.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

has_catatonit() {
    command -v catatonit >/dev/null 2>&1 || [[ -x /usr/libexec/podman/catatonit || -x /usr/bin/catatonit ]]
}

if has_catatonit; then
    log "catatonit present; nothing to do"
    exit 0
fi
[[ "$(id -u)" == 0 ]] || die "catatonit is missing and installing it needs root; run 'sudo scripts/setup-kube.sh'"
command -v apt-get >/dev/null 2>&1 || die "catatonit is missing and there is no apt-get; install catatonit with this system's package manager"
export DEBIAN_FRONTEND=noninteractive
log "installing catatonit from Debian"
if ! apt-get install -y -q --no-install-recommends catatonit >/dev/null 2>&1; then
    apt-get update -q >/dev/null || die "apt-get update failed; check access to the Debian mirror"
    apt-get install -y -q --no-install-recommends catatonit >/dev/null || die "apt-get install catatonit failed (see above)"
fi
has_catatonit || die "catatonit was installed but is not found"
log "installed catatonit"
