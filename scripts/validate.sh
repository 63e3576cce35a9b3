#!/usr/bin/env bash
# make validate: schema and graph checks of every pipeline in def/, or of PIPELINE=file.
# Each problem is printed as file:line: severity: message; exit 1 when there is any error.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
require_venv
cd "$ODK_ROOT"

target="${PIPELINE:-def}"
[[ -e "$target" ]] || die "PIPELINE=$target does not exist; give a pipeline file (e.g. PIPELINE=def/one-operator-pipeline.yml) or leave it empty for all of def/"
# The validator prints each problem as file:line and exits non-zero on any error.
exec "$ODK_PY" -m kit.pipeline.validate "$target"
