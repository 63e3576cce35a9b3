#!/usr/bin/env bash
# The whole suite: install what its tests need where this machine allows it (scripts/setup-test-tools.sh),
# say which groups of tests will be skipped and why (tests/requires.py), lint, pytest, and the same summary
# again after pytest's last line. pytest's exit code 5 ("no tests collected") is a failure here.
# Env: STRICT=1 (CI) makes every skip a failure; ODK_TEST_SETUP=0 installs nothing; PYTEST_ARGS.
set -euo pipefail
# shellcheck source=scripts/lib.sh source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
require_venv
cd "$ODK_ROOT"

export ODK_TEST_SETUP_DIR="${ODK_TEST_SETUP_DIR:-$ODK_RUN_DIR/test-setup}"
"$ODK_ROOT/scripts/setup-test-tools.sh"
summary="$("$ODK_PY" tests/requires.py block)"
printf '%s\n' "$summary" >&2
strict_missing=0
if [[ "${STRICT:-0}" != 0 ]] && [[ -n "$("$ODK_PY" tests/requires.py missing)" ]]; then
    strict_missing=1
fi

"$ODK_ROOT/scripts/lint.sh"
rc=0
read -r -a extra_args <<<"${PYTEST_ARGS:-}"
"$ODK_PY" -m pytest "${extra_args[@]}" "$@" || rc=$?
printf '%s\n' "$summary" >&2
if ((rc == 5)); then
    die "pytest collected no tests; the suite must never pass empty"
fi
if ((rc == 0 && strict_missing)); then
    die "STRICT=1 and tests were skipped for missing tools (above); install them with the commands given"
fi
exit "$rc"
