#!/usr/bin/env bash
# What `make test` installs before the suite: each group of tests/requires.py that is missing here, by its
# own setup script (podman, catatonit, Chromium + the viewer's node packages, Orthanc + dcmtk + dicom3tools,
# the bench environment). Idempotent and quick when everything is there (one check, about a second).
# System packages need root on Debian/Ubuntu (apt-get); elsewhere, or not as root, a group is left out and
# the reason is written to $ODK_TEST_SETUP_DIR/<group>.why for the summary of scripts/test.sh.
# Env: ODK_TEST_SETUP=0 installs nothing (only the summary says what is missing).
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
require_venv
cd "$ODK_ROOT"

setup_dir="${ODK_TEST_SETUP_DIR:?ODK_TEST_SETUP_DIR must name a folder}"
mkdir -p "$setup_dir"
rm -f "$setup_dir"/*.why "$setup_dir"/*.log

# debian_like: /etc/os-release says Debian or a derivative (Ubuntu), and apt-get is there.
debian_like() {
    [[ -r /etc/os-release ]] && command -v apt-get >/dev/null 2>&1 || return 1
    local id="" id_like=""
    # shellcheck disable=SC1091
    id="$(. /etc/os-release && printf '%s' "${ID:-}")"
    # shellcheck disable=SC1091
    id_like="$(. /etc/os-release && printf '%s' "${ID_LIKE:-}")"
    [[ " $id $id_like " == *" debian "* || " $id $id_like " == *" ubuntu "* ]]
}

mapfile -t plan < <("$ODK_PY" tests/requires.py install-plan)
if ((${#plan[@]} == 0)); then
    exit 0
fi
if [[ "${ODK_TEST_SETUP:-1}" == 0 ]]; then
    for line in "${plan[@]}"; do
        printf '%s\n' "not installed: ODK_TEST_SETUP=0" >"$setup_dir/${line%% *}.why"
    done
    exit 0
fi

root=0
[[ "$(id -u)" == 0 ]] && root=1
debian=0
debian_like && debian=1
for line in "${plan[@]}"; do
    read -r group how cmd <<<"$line"
    why=""
    case "$how" in
        never) why="not installed by make test" ;;
        root)
            if ((!root)); then
                why="not installed: needs root"
            elif ((!debian)); then
                why="not installed: not Debian/Ubuntu (no apt-get)"
            fi
            ;;
    esac
    if [[ -n "$why" ]]; then
        printf '%s\n' "$why" >"$setup_dir/$group.why"
        continue
    fi
    log "installing the test group '$group': $cmd (log: $setup_dir/$group.log)"
    read -r -a argv <<<"$cmd"
    if ! "${argv[@]}" >"$setup_dir/$group.log" 2>&1; then
        last="$(grep -v '^[[:space:]]*$' "$setup_dir/$group.log" | tail -n 1 || true)"
        printf '%s\n' "not installed: '$cmd' failed: ${last:0:200}" >"$setup_dir/$group.why"
        warn "'$cmd' failed: ${last:0:200}"
    fi
done
