#!/usr/bin/env bash
# Static checks: ruff (Python), shellcheck (shell), hadolint (Dockerfiles).
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
require_venv
cd "$ODK_ROOT"

log "ruff"
"$ODK_VENV/bin/ruff" check app kit tests lib/clara-pipeline-driver/src
log "shellcheck"
mapfile -t shell_files < <(git ls-files -co --exclude-standard -- 'scripts/*.sh' '.ci/run' 'scripts/**/*.sh' 'tests/**/*.sh')
"$ODK_VENV/bin/shellcheck" -x "${shell_files[@]}"
log "hadolint"
mapfile -t dockerfiles < <(git ls-files -co --exclude-standard -- 'Dockerfile*' 'scripts/*Dockerfile*' 'scripts/**/Dockerfile*' 'tests/*/Dockerfile*')
if ((${#dockerfiles[@]})); then
    "$ODK_VENV/bin/hadolint" "${dockerfiles[@]}"
fi
log "lint clean"
