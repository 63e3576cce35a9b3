"""What a running viewer records in ``$ODK_RUN_DIR/view``: ``view.pid`` (its process) and ``state``
(key=value lines: pid, url, output_dir, input_dir), as ``make triton`` records its server."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

PID_FILE = "view.pid"
STATE_FILE = "state"


def write(view_dir: Path, values: dict[str, str]) -> None:
    view_dir.mkdir(parents=True, exist_ok=True)
    for name, text in ((STATE_FILE, "".join(f"{k}={v}\n" for k, v in values.items())), (PID_FILE, f"{os.getpid()}\n")):
        tmp = view_dir / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(view_dir / name)


def read(view_dir: Path) -> dict[str, str]:
    try:
        lines = (view_dir / STATE_FILE).read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in lines if "=" in line)


def recorded_pid(view_dir: Path) -> int:
    try:
        return int((view_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return 0


def is_viewer(pid: int) -> bool:
    """``pid`` runs and is a viewer (``python -m kit.view``), not a process that reused the number."""
    if pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc: trust the pid
    return b"kit.view" in cmdline


def clear(view_dir: Path, pid: int | None = None) -> None:
    """Remove the record (only the one of ``pid`` when given)."""
    if pid is not None and recorded_pid(view_dir) not in (0, pid):
        return
    for name in (PID_FILE, STATE_FILE):
        (view_dir / name).unlink(missing_ok=True)


def stop(view_dir: Path, timeout: float = 10.0) -> str:
    """Stop the recorded viewer; returns what happened, in words."""
    pid = recorded_pid(view_dir)
    if not pid:
        return f"no viewer recorded in {view_dir}; nothing to stop"
    if not is_viewer(pid):
        clear(view_dir)
        return f"the viewer recorded in {view_dir} (pid {pid}) is not running any more; record removed"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and is_viewer(pid):
        time.sleep(0.1)
    if is_viewer(pid):
        os.kill(pid, signal.SIGKILL)
    clear(view_dir)
    return f"viewer (pid {pid}) stopped"
