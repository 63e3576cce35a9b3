"""``python -m kit.scaffold NAME [--kind KIND] [--root DIR] [--image IMAGE --tag TAG]`` (``make new-operator``):
a runnable operator skeleton; a refused name is one line on stderr, exit 1, nothing written."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kit.paths import ROOT
from kit.scaffold import KINDS, ScaffoldError, generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make new-operator", description=__doc__)
    parser.add_argument("name")
    parser.add_argument("--kind", default="segmentation", help=f"one of {', '.join(KINDS)}")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to write into (default: this one)")
    parser.add_argument("--image", default="clara/simple-operator", help="the operator image of the pipeline")
    parser.add_argument("--tag", default="0.1.0")
    args = parser.parse_args(argv)
    try:
        written = generate(args.name, args.kind, args.root.resolve(), args.image, args.tag)
    except (ScaffoldError, OSError) as exc:
        print(f"[odk] error: {exc}", file=sys.stderr)
        return 1
    root = args.root.resolve()
    for path in written:
        print(f"[odk] wrote {path.relative_to(root)}", file=sys.stderr)
    name, op = args.name, args.name.replace("_", "-")
    print(f"[odk] operator {name} ({args.kind}): edit app/{name}.py; try it with"
          f" 'make run-local OPERATOR={name}', 'make run-pipeline PIPELINE=def/{name}-pipeline.yml',"
          f" '.venv/bin/python -m pytest tests/test_operator_{name}.py' (outputs of run-pipeline: {op}/results)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
