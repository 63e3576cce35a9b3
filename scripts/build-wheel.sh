#!/usr/bin/env bash
# Rebuild the vendored driver wheel from lib/clara-pipeline-driver/ (reproducibly: the same source
# always gives the same wheel), replacing lib/clara_pipeline_driver-*.whl.
# Usage: scripts/build-wheel.sh [OUTDIR]   (default lib/; the tests build into a scratch folder)
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
require_venv

# Fixed zip timestamps (2020-01-01T00:00:00Z) so a rebuild of unchanged source is byte-identical.
export SOURCE_DATE_EPOCH=1577836800
src="$ODK_ROOT/lib/clara-pipeline-driver"
outdir="${1:-$ODK_ROOT/lib}"

"$ODK_PY" -c 'import flit_core' 2>/dev/null \
    || die "flit_core is missing from $ODK_VENV; run 'make venv' (it is pinned in requirements-dev.txt)"
mkdir -p "$outdir"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# --no-isolation: build with the pinned flit_core in the venv, offline and reproducibly.
"$ODK_PY" -m build --wheel --no-isolation --outdir "$scratch" "$src" >"$scratch/build.log" 2>&1 \
    || { cat "$scratch/build.log" >&2; die "building the wheel from $src failed (log above)"; }
shopt -s nullglob
built=("$scratch"/clara_pipeline_driver-*.whl)
((${#built[@]} == 1)) || die "expected one wheel from the build in $scratch, found ${#built[@]}"
old=("$outdir"/clara_pipeline_driver-*.whl)
((${#old[@]} == 0)) || rm -f "${old[@]}"
cp "${built[0]}" "$outdir/"
log "built $outdir/$(basename "${built[0]}")"
