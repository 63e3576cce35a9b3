"""Run-dir state of the kit's background servers: ``<run-dir>/state`` key=value lines and live pids."""

from __future__ import annotations

from pathlib import Path

STATE_FILE = "state"


def read_state(run_dir: Path) -> dict[str, str]:
    """The key=value lines of <run-dir>/state (never sourced); {} when there is none."""
    path = run_dir / STATE_FILE
    if not path.is_file():
        return {}
    pairs = (line.partition("=") for line in path.read_text(encoding="utf-8").splitlines())
    return {k: v for k, _, v in pairs if k}


