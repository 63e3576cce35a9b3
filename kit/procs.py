"""Processes the kit starts: whether one recorded by pid still runs, and why a command it ran failed."""

from __future__ import annotations

import os

# How command-line tools start the line that says why they failed: kubectl ("error: ...", "Error from
# server ...", "The connection to the server ... was refused", "Unable to connect to the server: ..."), podman
# ("Error: ...").
REASON_STARTS = ("error", "Error", "The connection", "Unable")


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists (also when it belongs to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def failure_reason(stderr: str, stdout: str) -> str:
    """The one line that says why a command failed: its last error line on stderr, else its last stderr line,
    else its last stdout line. Tools print what they did on stdout (kubectl's versions, "namespace/x created",
    podman's ids) and why they stopped on stderr, so stdout's last line is the reason only when stderr is empty."""
    errors = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    reason = next((ln for ln in reversed(errors) if ln.startswith(REASON_STARTS)), errors[-1] if errors else "")
    if not reason:
        lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
        reason = lines[-1] if lines else "no output"
    return reason
