#!/usr/bin/env bash
# Create or update a virtualenv from a pinned requirements file.
# Usage: scripts/venv.sh VENV_DIR REQUIREMENTS_FILE
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

venv="${1:?usage: venv.sh VENV_DIR REQUIREMENTS_FILE}"
reqs="${2:?usage: venv.sh VENV_DIR REQUIREMENTS_FILE}"
# The pins (numpy 1.26 for nvidia-pytriton, scipy 1.17) need CPython 3.11 or 3.12.
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    for candidate in python3.11 python3.12 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then
            python="$candidate"
            break
        fi
    done
fi
if [[ -z "$python" ]] || ! command -v "$python" >/dev/null 2>&1; then
    die "no Python found; install Python 3.11 (or set PYTHON=/path/to/python3.11)"
fi
version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" || die "$python does not run; set PYTHON=/path/to/python3.11"
case "$version" in
    3.11 | 3.12) ;;
    *) die "$python is Python $version; the kit needs 3.11 or 3.12 (set PYTHON=/path/to/python3.11)" ;;
esac
if [[ ! -x "$venv/bin/python" ]]; then
    log "creating virtualenv $venv"
    "$python" -m venv "$venv" || die "could not create $venv; on Debian/Ubuntu: apt-get install python3-venv"
fi
log "installing $reqs into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs" \
    || die "pip install -r $reqs failed (see above); check network access to PyPI"
touch "$venv/.installed-$(basename "$reqs")"
