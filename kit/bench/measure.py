"""Run a command as a child process and measure it: wall time (process start included) and peak RSS.

Peak RSS is the child's own high-water mark (VmHWM in /proc/<pid>/status), polled while it runs. Neither
``RUSAGE_CHILDREN`` nor ``wait4``'s ru_maxrss would do: Linux carries the parent's RSS at fork/vfork time
over into the child's ru_maxrss across exec, so a big bench process would inflate every child's figure.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class BenchError(RuntimeError):
    """A measured command failed; the message names it and where its output is."""


@dataclass(frozen=True)
class Measured:
    rc: int
    wall_s: float
    peak_rss_mb: float
    log: Path


def _vm_hwm_mb(pid: int) -> float:
    """High-water RSS of the process's current image (0 when it is already gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return 0.0


def run_measured(cmd: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path | None = None,
                 timeout_s: float = 1800.0) -> Measured:
    """Run ``cmd`` to completion with its output in ``log``; raise BenchError when it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
        deadline = t0 + timeout_s
        peak = 0.0
        while True:
            # Read before reaping: a zombie no longer has the figure.
            peak = max(peak, _vm_hwm_mb(proc.pid))
            pid, status, _usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, _usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter() - t0
    proc.returncode = rc = os.waitstatus_to_exitcode(status)
    measured = Measured(rc=rc, wall_s=wall, peak_rss_mb=peak, log=log)
    if rc != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise BenchError(f"{' '.join(cmd[:4])} ... exited {rc} (log {log}):\n  " + "\n  ".join(tail))
    return measured


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def median_stages(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per-key median over runs (keys of the first run, in its order)."""
    if not runs:
        return {}
    return {k: round(median([r[k] for r in runs if k in r]), 4) for k in runs[0]}
