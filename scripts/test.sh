#!/usr/bin/env bash
# The whole suite: lint, then pytest. pytest's exit code 5 ("no tests collected") is a failure here.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
require_venv
cd "$ODK_ROOT"

"$ODK_ROOT/scripts/lint.sh"
rc=0
read -r -a extra_args <<<"${PYTEST_ARGS:-}"
"$ODK_PY" -m pytest "${extra_args[@]}" "$@" || rc=$?
if ((rc == 5)); then
    die "pytest collected no tests; the suite must never pass empty"
fi
exit "$rc"
