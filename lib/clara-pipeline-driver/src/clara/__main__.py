"""``python -m clara env``: show how the current environment resolves, without running anything.

Exits 0 when an operator would start with this environment, 2 (after printing the Error) when not.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from . import __version__, env
from .config import DriverConfig
from .errors import Error
from .payload import PayloadEntry, check_payload, require_entries

EXIT_BAD_ENVIRONMENT = 2


def describe(config: DriverConfig, environ: Mapping[str, str]) -> list[str]:
    """The lines ``python -m clara env`` prints for a parsed environment."""
    job_id = str(config.job_id)
    if not environ.get(env.JOBID, "").strip():
        job_id = f"unset, a fresh one per run ({env.JOBID})"
    if config.sync:
        present = "present" if config.synclock_path.exists() else "absent"
        sync = f"wait up to {config.synclock_timeout:g}s for {config.synclock_path} ({present})"
    else:
        sync = f"off ({env.NOSYNCLOCK})"
    timeout = "none" if config.handler_timeout is None else f"{config.handler_timeout:g}s per handler"
    lines = [
        f"job      {config.job_name}",
        f"job id   {job_id}",
        f"stage    {config.stage_name}",
        f"sync     {sync}",
        f"timeout  {timeout}",
        "",
    ]
    rows = [("side", "name", "path", "state")]
    rows += [("input", _name(e), str(e.path), _state(e, output=False)) for e in config.payload.input_entries]
    rows += [("output", _name(e), str(e.path), _state(e, output=True)) for e in config.payload.output_entries]
    if len(rows) == 1:
        rows.append(("-", "-", "-", f"no entries ({env.INPUTPATHS} and {env.OUTPUTPATHS} unset)"))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(3)] + [row[3]]
        lines.append("  ".join(cells))
    return lines


def _name(entry: PayloadEntry) -> str:
    return entry.name or "(empty)"


def _state(entry: PayloadEntry, output: bool) -> str:
    if entry.path.is_dir():
        return "exists"
    if entry.path.exists():
        return "NOT A DIRECTORY"
    return "missing (created at run)" if output else "MISSING"


def show_environment(environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    try:
        config = DriverConfig.from_environ(environ)
    except Error as exc:
        print(f"error: {exc}", file=err)
        return EXIT_BAD_ENVIRONMENT
    for line in describe(config, environ):
        print(line, file=out)
    try:
        check_payload(config.payload, create_outputs=False)
        require_entries(config.payload)
    except Error as exc:
        print(f"error: {exc}", file=err)
        return EXIT_BAD_ENVIRONMENT
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clara", description="clara pipeline driver tools")
    parser.add_argument("--version", action="version", version=f"clara-pipeline-driver {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("env", help="show how NVIDIA_CLARA_* resolve: job, stage, sync, payload entries")
    parser.parse_args(argv)  # "env" is the only command, and it is required
    return show_environment(os.environ, sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
