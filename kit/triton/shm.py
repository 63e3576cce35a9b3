"""Shared-memory segments in /dev/shm that a Triton the kit ran, or an operator, left when it was killed.

Three kinds, by name:
  ``psm_*``      PyTriton's tensor store (``multiprocessing.shared_memory``'s default names: 4, 16, 64 MB
                 segments), unlinked only when the embedded server closes cleanly;
  ``odk_*``      the operator's input/output regions (``odk_<pid>_<hex>_in|out``);
  ``pytrtion*``  the python backend's regions of the embedded tritonserver.

A segment is an orphan when no living process maps it (``/proc/*/maps``) nor holds it open
(``/proc/*/fd``): its creator keeps it mapped for as long as it uses it, so an unmapped one has no owner
left. Only segments of this user, older than half a second, are removed.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable
from pathlib import Path

SHM_DIR = Path("/dev/shm")
PREFIXES = ("psm_", "odk_", "pytrtion")
MIN_AGE_S = 0.5


@dataclasses.dataclass(frozen=True)
class Freed:
    segments: int = 0
    bytes: int = 0

    def line(self) -> str:
        return (f"freed {self.bytes / 2**20:.1f} MB of shared memory: {self.segments} segment(s) in {SHM_DIR} "
                "left by Triton servers or operators that are gone")


def is_kit_segment(name: str) -> bool:
    return name.startswith(PREFIXES)


def kit_segments(shm_dir: Path = SHM_DIR) -> dict[str, int]:
    """{name: size in bytes} of the kit's and PyTriton's segments now in ``shm_dir``."""
    found = {}
    try:
        entries = list(os.scandir(shm_dir))
    except OSError:
        return {}
    for entry in entries:
        if is_kit_segment(entry.name):
            try:
                found[entry.name] = entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return found


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def segments_in_use(pids: Iterable[int] | None = None, shm_dir: Path = SHM_DIR) -> set[str]:
    """Names of the segments in ``shm_dir`` that the given processes (default: all) map or hold open."""
    prefix = f"{shm_dir}/"
    used: set[str] = set()
    for pid in _pids() if pids is None else pids:
        # Open files first, maps second: a segment listed before this scan was opened before it, so when its fd
        # is closed by now, its creator (which maps before it closes) already maps it.
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            fds = []  # gone meanwhile, or another user's process (which cannot map this user's 0600 segments)
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(prefix):
                used.add(target[len(prefix):].removesuffix(" (deleted)"))
        try:
            with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
                for line in maps:
                    at = line.find(prefix)
                    if at >= 0:
                        used.add(line[at + len(prefix):].rstrip("\n").removesuffix(" (deleted)"))
        except OSError:
            continue
    return used


def orphans(shm_dir: Path = SHM_DIR, min_age_s: float = MIN_AGE_S) -> dict[str, int]:
    """The kit's/PyTriton's segments of this user that no living process maps or holds open."""
    candidates = {}
    now = time.time()
    uid = os.getuid()
    for name in kit_segments(shm_dir):
        try:
            st = (shm_dir / name).lstat()
        except OSError:
            continue
        if st.st_uid == uid and now - st.st_mtime >= min_age_s:
            candidates[name] = st.st_size
    if not candidates:
        return {}
    used = segments_in_use(shm_dir=shm_dir)  # read after the listing: a segment made since is not a candidate
    return {n: size for n, size in candidates.items() if n not in used}


def reap_orphans(shm_dir: Path = SHM_DIR, min_age_s: float = MIN_AGE_S) -> Freed:
    """Unlink every orphan segment; how many and how much."""
    count = total = 0
    for name, size in orphans(shm_dir, min_age_s).items():
        try:
            (shm_dir / name).unlink()
        except FileNotFoundError:
            continue
        except OSError:
            continue
        count += 1
        total += size
    return Freed(count, total)
