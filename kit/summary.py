"""Summarise an operator output folder: one line per study, where the files are, and Dice where truth exists.

    python -m kit.summary OUTPUT_DIR [--truth-dir DIR]

A truth label map is looked up as ``<truth-dir>/<stem>_truth.nii.gz`` (the sample phantom ships one).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

import odk


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1.0 when both are empty)."""
    denom = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 1.0 if denom == 0 else 2.0 * int(np.count_nonzero(a & b)) / denom


def label_names(report: odk.LabelMapResult) -> list[str]:
    """The model's classes by label value, from the report's ``labels`` (background first)."""
    return [name for name, _ in sorted(report.labels.items(), key=lambda item: item[1].label)]


def truth_scores(seg_path: Path, truth_path: Path, names: list[str]) -> str:
    """Dice per foreground class; the first one is the organ, scored with the classes it holds."""
    seg = np.asanyarray(nib.load(str(seg_path)).dataobj)
    truth = np.asanyarray(nib.load(str(truth_path)).dataobj)
    if seg.shape != truth.shape:
        return f"truth shape {truth.shape} != {seg.shape}"
    if len(names) < 2:
        return "no foreground class in the report"
    held = f" (organ, {', '.join(n + 's' for n in names[2:])} included)" if len(names) > 2 else ""
    parts = [f"{names[1]} {dice(seg > 0, truth > 0):.3f}{held}"]
    parts += [f"{name} {dice(seg == i, truth == i):.3f}" for i, name in enumerate(names) if i >= 2]
    return "Dice vs truth: " + ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output_dir", type=Path)
    ap.add_argument("--truth-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    out = args.output_dir.resolve()
    reports = sorted(p for p in out.rglob("*.json") if not p.name.startswith("."))
    if not reports:
        print(f"[odk] no study reports (<stem>.json) in {out}; run the operator first (make demo)", file=sys.stderr)
        return 1
    print(f"\nResults in {out}:")
    for rep_path in reports:
        rep = odk.read_result(rep_path)
        stem = rep_path.name[: -len(".json")]
        shown = str(rep_path.relative_to(out).with_name(stem))  # sub-folder included: same names stay apart
        shape = "x".join(map(str, rep.shape))
        what = odk.summary_line(rep)
        print(f"  {shown}: {shape} voxels, {what}, {rep.timings_s.get('total', 0):.1f} s via {rep.transport}")
        for role, name in rep.outputs.items():
            print(f"    {'label map' if role == 'segmentation' else role:<10} {rep_path.parent / name}")
        for warning in rep.warnings:
            print(f"    warning    {warning}")
        truth = args.truth_dir / f"{stem}_truth.nii.gz" if args.truth_dir else None
        seg = rep_path.parent / rep.outputs.get("segmentation", f"{stem}_seg.nii.gz")
        if isinstance(rep, odk.LabelMapResult) and truth is not None and truth.is_file() and seg.is_file():
            print(f"    {truth_scores(seg, truth, label_names(rep))}  ({truth})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
