#!/usr/bin/env bash
# Make real containers work on a machine with no Docker engine and no reachable registry:
#   1. install podman + runc (+ debootstrap, and the CNI DNS plugin so that containers on a user-defined
#      network such as odk-net reach each other by name) from the Debian mirror,
#   2. configure podman for this kind of host (runc, cgroupfs, no default ulimits, file events log),
#   3. create a Python base image locally with debootstrap (no pull), under a local name of its own
#      (localhost/odk-python:3.11-bookworm): the scripts pass it as BASE_IMAGE (scripts/lib.sh
#      python_base_args), while the Dockerfiles' default FROM stays the official python image.
# Idempotent: each step is skipped when already done, and the whole script returns in about a second
# when podman already runs containers from the base image. Prints what it did.
# Env: ODK_BASE_IMAGE (default localhost/odk-python:3.11-bookworm), ODK_DEBIAN_SUITE (bookworm),
#      ODK_DEBIAN_MIRROR (default: the first Debian mirror in /etc/apt), ODK_CACHE_DIR (default .cache).
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

base_image="${ODK_BASE_IMAGE:-$ODK_LOCAL_BASE_IMAGE}"
suite="${ODK_DEBIAN_SUITE:-bookworm}"
cache_dir="${ODK_CACHE_DIR:-$ODK_ROOT/.cache}"
rootfs_tar="$cache_dir/odk-base-$suite-rootfs.tar"
conf=/etc/containers/containers.conf
conf_marker="# Written by the ODK's scripts/setup-podman.sh"
# What the base carries: python3 + venv for the operator's venv, libpython3.11 for the Python backend
# of the containerised (CPU) Triton, ca-certificates for pip.
base_packages="python3,python3-venv,ca-certificates,libpython3.11"

SECONDS=0

# Name resolution on user-defined networks: netavark has it built in (aardvark-dns); CNI needs dnsname.
has_dns_plugin() {
    [[ "$(podman info --format '{{.Host.NetworkBackend}}' 2>/dev/null)" == netavark ]] \
        || [[ -x /usr/lib/cni/dnsname || -x /usr/libexec/cni/dnsname || -x /opt/cni/bin/dnsname ]]
}

# podman runs a container from the base image: then there is nothing to do.
podman_ready() {
    command -v podman >/dev/null 2>&1 \
        && has_dns_plugin \
        && podman image exists "$base_image" 2>/dev/null \
        && podman run --rm --network none "$base_image" python3 -c 'import venv' >/dev/null 2>&1
}

if podman_ready; then
    log "podman ready ($(podman --version)); base image $base_image present; nothing to do"
    exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
    die "podman is not set up and this needs root (apt-get, /etc/containers, debootstrap); run 'sudo scripts/setup-podman.sh'"
fi

# --- 1. packages ---------------------------------------------------------------------------------
missing=()
for cmd in podman runc debootstrap; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if command -v podman >/dev/null 2>&1 && ! has_dns_plugin; then
    missing+=(dnsname)
fi
if ((${#missing[@]})); then
    command -v apt-get >/dev/null 2>&1 \
        || die "need ${missing[*]} and there is no apt-get; install podman + runc with this system's package manager"
    log "installing ${missing[*]} (and helpers) from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt_install() {
        apt-get install -y -q --no-install-recommends \
            podman runc debootstrap uidmap slirp4netns fuse-overlayfs containernetworking-plugins \
            golang-github-containernetworking-plugin-dnsname >/dev/null
    }
    if ! apt_install 2>/dev/null; then
        log "apt-get update"
        apt-get update -q >/dev/null || die "apt-get update failed; check access to the Debian mirror"
        apt_install || die "apt-get install podman runc debootstrap failed (see above)"
    fi
    log "installed: $(podman --version), runc $(runc --version | awk 'NR==1 {print $3}')"
else
    log "packages present: $(podman --version)"
fi

# --- 2. podman configuration ---------------------------------------------------------------------
# crun fails here ("cgroups in hybrid mode not supported"), root may lack CAP_SYS_RESOURCE (default
# ulimits fail), and there may be no journald.
if [[ -f "$conf" ]] && ! grep -qF "$conf_marker" "$conf"; then
    warn "$conf exists and is not ours; leaving it as it is"
else
    desired="$(cat <<EOF
$conf_marker
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
)"
    if [[ "$(cat "$conf" 2>/dev/null)" != "$desired" ]]; then
        mkdir -p "$(dirname "$conf")"
        printf '%s\n' "$desired" >"$conf"
        log "wrote $conf (runtime runc, cgroupfs, default_ulimits = [], events_logger file)"
    else
        log "$conf already configured"
    fi
fi
podman info >/dev/null 2>&1 || die "'podman info' still fails after set-up; run 'podman info' to see why"
# A network made before the DNS plugin was there has no name resolution: drop it (make triton recreates it).
if podman network exists odk-net 2>/dev/null \
    && [[ "$(podman network inspect --format '{{.DNSEnabled}}' odk-net)" != true ]]; then
    podman network rm odk-net >/dev/null && log "removed network odk-net (made without DNS); 'make triton' recreates it"
fi

# --- 3. base image, without any registry -----------------------------------------------------------
debian_mirror() {
    if [[ -n "${ODK_DEBIAN_MIRROR:-}" ]]; then
        printf '%s\n' "$ODK_DEBIAN_MIRROR"
        return
    fi
    local uri
    # deb822 sources: the URIs of the stanza whose Suites include the release itself.
    uri="$(awk -v s="$suite" '
        /^URIs:/ {u = $2}
        /^Suites:/ {for (i = 2; i <= NF; i++) if ($i == s) {print u; exit}}
        /^$/ {u = ""}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
    if [[ -z "$uri" ]]; then
        uri="$(awk -v s="$suite" '$1 == "deb" && $3 == s {print $2; exit}' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)"
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

if podman image exists "$base_image"; then
    log "base image $base_image present"
else
    if [[ ! -s "$rootfs_tar" ]]; then
        mirror="$(debian_mirror)"
        workdir="$(mktemp -d)"
        trap 'rm -rf "$workdir"' EXIT
        log "debootstrap $suite (minbase + $base_packages) from $mirror (about a minute)"
        debootstrap --variant=minbase --include="$base_packages" "$suite" "$workdir/rootfs" "$mirror" \
            >"$workdir/debootstrap.log" 2>&1 \
            || { tail -n 20 "$workdir/debootstrap.log" >&2; die "debootstrap from $mirror failed (log above); set ODK_DEBIAN_MIRROR to a reachable Debian mirror"; }
        # Slim it down like the official slim images: no apt lists/caches, docs, man pages or locales.
        rm -rf "$workdir/rootfs"/var/lib/apt/lists/* "$workdir/rootfs"/var/cache/apt/* \
            "$workdir/rootfs"/var/cache/debconf/*-old "$workdir/rootfs"/var/log/* \
            "$workdir/rootfs"/usr/share/doc/* "$workdir/rootfs"/usr/share/man/* \
            "$workdir/rootfs"/usr/share/info/* "$workdir/rootfs"/usr/share/locale/*
        mkdir -p "$cache_dir"
        tar -C "$workdir/rootfs" --numeric-owner -cf "$rootfs_tar.tmp" .
        mv "$rootfs_tar.tmp" "$rootfs_tar"
        rm -rf "$workdir"
        trap - EXIT
        log "cached the root file system in $rootfs_tar ($(du -h "$rootfs_tar" | cut -f1))"
    else
        log "using the cached root file system $rootfs_tar"
    fi
    podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        "$rootfs_tar" "$base_image" >/dev/null
    log "imported $base_image ($(podman image inspect --format '{{.Size}}' "$base_image" | awk '{printf "%.0f MB", $1 / 1e6}'))"
fi

podman_ready || die "podman cannot run $base_image even after set-up; try 'podman run --rm $base_image python3 -V'"
log "podman ready in ${SECONDS}s: $(podman --version), runtime runc, base image $base_image"
