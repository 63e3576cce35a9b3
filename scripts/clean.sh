#!/usr/bin/env bash
# make clean: remove the run state ($ODK_RUN_DIR) and local/output, keeping .venv. Refused while a server the
# kit started still runs (its state is what stops it): run its stop target first.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
cd "$ODK_ROOT"

require_no_live_services "make clean"
rm -rf "$ODK_RUN_DIR"
mkdir -p local/output
find local/output -mindepth 1 -maxdepth 1 ! -name .gitkeep -exec rm -rf {} +
touch local/output/.gitkeep
