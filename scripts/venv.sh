#!/usr/bin/env bash
# Create or update a virtualenv from a pinned requirements file.
# Usage: scripts/venv.sh VENV_DIR REQUIREMENTS_FILE
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

venv="${1:?usage: venv.sh VENV_DIR REQUIREMENTS_FILE}"
reqs="${2:?usage: venv.sh VENV_DIR REQUIREMENTS_FILE}"
python="${PYTHON:-python3}"

command -v "$python" >/dev/null 2>&1 || die "'$python' not found; install Python 3.11 (or set PYTHON=/path/to/python3)"
if [[ ! -x "$venv/bin/python" ]]; then
    log "creating virtualenv $venv"
    "$python" -m venv "$venv" || die "could not create $venv; on Debian/Ubuntu: apt-get install python3-venv"
fi
log "installing $reqs into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs" \
    || die "pip install -r $reqs failed (see above); check network access to PyPI"
touch "$venv/.installed-$(basename "$reqs")"
