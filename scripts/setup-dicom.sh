#!/usr/bin/env bash
# The DICOM tools the kit's DICOM tests and targets use, from the Debian mirror when missing:
#   orthanc (a real PACS), dcmtk (storescu, storescp, findscu, movescu, dcmdump), dicom3tools (dciodvfy).
# Idempotent: returns at once when every command is there. Prints what it did.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

# command -> the Debian package that provides it
declare -A package_of=([Orthanc]=orthanc [storescu]=dcmtk [storescp]=dcmtk [dcmdump]=dcmtk [dciodvfy]=dicom3tools)

missing=()
for cmd in "${!package_of[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${package_of[$cmd]}")
done
if ((${#missing[@]} == 0)); then
    log "DICOM tools present: Orthanc $(Orthanc --version 2>/dev/null | awk 'NR==1 {print $NF}'), dcmtk $(storescu --version 2>/dev/null | awk 'NR==1 {print $3}' | tr -d v), dciodvfy; nothing to do"
    exit 0
fi
mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
[[ "$(id -u)" == 0 ]] || die "need ${packages[*]} and this needs root (apt-get); run 'sudo scripts/setup-dicom.sh'"
command -v apt-get >/dev/null 2>&1 \
    || die "need ${packages[*]} and there is no apt-get; install Orthanc, dcmtk and dicom3tools with this system's package manager"
export DEBIAN_FRONTEND=noninteractive
log "installing ${packages[*]} from Debian"
apt_install() {
    apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null
}
if ! apt_install 2>/dev/null; then
    log "apt-get update"
    apt-get update -q >/dev/null || die "apt-get update failed; check access to the Debian mirror"
    apt_install || die "apt-get install ${packages[*]} failed (see above)"
fi
for cmd in "${!package_of[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' is still missing after installing ${package_of[$cmd]}"
done
# The Debian package starts Orthanc as a system service on the default ports; the kit runs its own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet orthanc 2>/dev/null; then
    systemctl disable --now orthanc >/dev/null 2>&1 || warn "could not stop the orthanc system service"
fi
log "installed ${packages[*]}"
