"""The command line shared by the in-process contenders (the limit and the MONAI peer): one study, one run."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

Runner = Callable[[Path, Path, Path, float, str, int, bool], dict]


def main(prog: str, description: str | None, run: Runner, argv: list[str] | None = None) -> int:
    """Parse the contender's arguments, run it once on ``--input`` and write its result to ``--json``."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--input", type=Path, required=True)
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--out-dir", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--blend", default="gaussian")
    p.add_argument("--batch-size", type=int, default=0)
    p.add_argument("--largest-component", type=int, default=1)
    a = p.parse_args(argv)
    result = run(a.input, a.model_dir, a.out_dir, a.overlap, a.blend, a.batch_size, bool(a.largest_component))
    a.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0
