"""The process groups of the listener's jobs: recorded while a pipeline runs, found again after a crash.

Every job's pipeline leads a process group of its own (``start_new_session``), and every process of it has
``ODK_LISTEN_JOB=<job folder>`` in its environment. ``<job>/run.state`` (key=value lines) records the group
while it runs: ``pgid``, ``listener_pid``, ``started_at``. A group is ours only when a process in it still
carries that marker: a recorded pgid that the system gave to something else since is never signalled.

An operator started warm (kit.warm) is forked by the fork server, in a session of its own, and its
/proc/<pid>/environ is the server's: it claims its job instead (:func:`claim`), a file ``<job>/warm/<pid>``
holding its start time, and counts as the job's while a live process of that pid has that start time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from odk import atomic_write_bytes

RUN_STATE = "run.state"
MARKER = "ODK_LISTEN_JOB"
WARM_DIR = "warm"  # <job>/warm/<pid>: operators of the job forked by the fork server


@dataclass(frozen=True)
class RunState:
    pgid: int
    listener_pid: int
    started_at: str


def record(folder: Path, pgid: int, started_at: str) -> None:
    text = f"pgid={pgid}\nlistener_pid={os.getpid()}\nstarted_at={started_at}\n"
    atomic_write_bytes(folder / RUN_STATE, text.encode())


def recorded(folder: Path) -> RunState | None:
    try:
        lines = (folder / RUN_STATE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    values = dict(line.partition("=")[::2] for line in lines)
    try:
        return RunState(int(values["pgid"]), int(values.get("listener_pid") or 0), values.get("started_at", ""))
    except (KeyError, ValueError):
        return None


def forget(folder: Path) -> None:
    with contextlib.suppress(OSError):
        (folder / RUN_STATE).unlink()


def _environ_value(pid: int, key: str) -> str | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = f"{key}=".encode()
    for item in env.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix):].decode(errors="replace")
    return None


def _environ_marker(pid: int) -> str | None:
    return _environ_value(pid, MARKER)


def _pgid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[2]) if len(fields) > 2 and fields[0] not in ("Z", "X") else 0


def _start_time(pid: int) -> str:
    """The process's start time (clock ticks since boot, /proc/<pid>/stat field 22): a pid with another start
    time is another process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return ""
    return fields[19] if len(fields) > 19 else ""


def claim(folder: Path, pid: int | None = None) -> None:
    """Record that process ``pid`` (this one) belongs to the job of ``folder`` although it does not carry the
    marker in /proc (an operator forked warm)."""
    pid = pid or os.getpid()
    atomic_write_bytes(folder / WARM_DIR / str(pid), _start_time(pid).encode())


def _claimed(folder: Path) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for path in (folder / WARM_DIR).iterdir():
            if path.name.isdigit() and _pgid(int(path.name)):
                with contextlib.suppress(OSError):
                    if path.read_text() == _start_time(int(path.name)):
                        found.append(int(path.name))
    return found


def members(folder: Path, pgid: int | None = None) -> list[int]:
    """Live processes of this job (its marker in their environment, or claimed by an operator forked warm), in
    process group ``pgid`` when given."""
    found = []
    target = str(folder)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if _environ_marker(pid) != target:
            continue
        group = _pgid(pid)
        if group and (pgid is None or group == pgid):
            found.append(pid)
    for pid in _claimed(folder):
        if pid not in found and (pgid is None or _pgid(pid) == pgid):
            found.append(pid)
    return found


def end(folder: Path, grace_s: float) -> list[int]:
    """End every process of this job: SIGTERM (and SIGCONT for a stopped one) to each of their process groups,
    then SIGKILL to what is left after ``grace_s``, and remove what the killed ones leave (kill_leftovers).
    Returns the pids that were running."""
    pids = members(folder)
    groups = {_pgid(p) for p in pids} - {0}
    for group in groups:
        for sig in (signal.SIGTERM, signal.SIGCONT):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)
    deadline = time.monotonic() + grace_s
    while members(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    kill_leftovers(folder)
    return pids


def kill_leftovers(folder: Path) -> list[int]:
    """SIGKILL every process of this job still alive, then remove what they leave: their shared-memory regions
    (and registrations with their Triton) and the temporary files of their atomic writes in output/. Returns
    the pids killed."""
    from kit.triton.reap import SHM_DIR, reap, region_prefix, unregister

    alive = members(folder)
    grpc = {pid: _environ_value(pid, "NVIDIA_TRITON_GRPCURI") or "" for pid in alive}
    for pid in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(_pgid(pid) or pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while members(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in alive:  # dead now (a zombie at most, which maps nothing): its regions are nobody's
        for region in SHM_DIR.glob(f"{region_prefix(pid)}*"):
            region.unlink(missing_ok=True)
        if grpc[pid]:  # Triton may still use a region for a request of the killed operator: a short wait
            unregister(grpc[pid], region_prefix(pid), timeout_s=2.0, wait_s=3.0)
    if alive:
        reap(0, folder / "output", 0.0)  # the hidden temporaries of their atomic writes
    return alive
