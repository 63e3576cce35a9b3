"""LISTEN_KEEP_DAYS: job folders hold patient data; settled jobs older than that are removed (at listener
start and by `make listen-prune`). Jobs queued, running or receiving are never removed. 0 keeps every job."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kit.dicom.jobs import SETTLED_STATES, read_jobs

DEFAULT_KEEP_DAYS = 7.0


@dataclass(frozen=True)
class Pruned:
    job: str
    state: str
    finished_at: str


def _epoch(stamp: str) -> float | None:
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def prune(jobs_dir: Path, keep_days: float, now: float | None = None) -> list[Pruned]:
    """Remove settled jobs that finished more than keep_days ago (their finished_at, else received_at, else
    the folder's modification time); returns what was removed."""
    if keep_days <= 0:
        return []
    cutoff = (time.time() if now is None else now) - keep_days * 86400
    removed = []
    for status in read_jobs(jobs_dir):
        if status.get("state") not in SETTLED_STATES:
            continue
        folder = jobs_dir / str(status.get("job", ""))
        if folder == jobs_dir or not folder.is_dir():
            continue
        stamp = status.get("finished_at") or status.get("received_at") or ""
        when = _epoch(stamp)
        if when is None:
            when = folder.stat().st_mtime
        if when < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(Pruned(folder.name, str(status.get("state")), stamp))
    return removed
