"""Command line: ``python -m kit.phantom sample`` (the kit's sample study) or ``make`` (any phantom)."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.phantom import dicom
from kit.phantom.io import write
from kit.phantom.render import make_phantom


@dataclass(frozen=True)
class Sample:
    """The sample study in local/input: a fixed seed on a typical scanner grid, LPS-stored like DICOM."""

    seed: int = 1007
    shape: tuple[int, int, int] = (320, 320, 64)
    spacing: tuple[float, float, float] = (0.9, 0.9, 3.0)
    noise: float = 10.0
    orientation: str = "LPS"
    ct: str = "local/input/synthetic_phantom_001.nii.gz"
    truth: str = "tests/data/synthetic_phantom_001_truth.nii.gz"
    dicom: str = "local/input-dicom/synthetic_phantom_001"


def _report(ct: Path, labels: Path | None, info: dict, seconds: float, lab: np.ndarray) -> None:
    counts = np.bincount(lab.ravel(), minlength=3)
    print(f"wrote {ct}" + (f" and {labels}" if labels else "")
          + f" in {seconds:.1f} s: shape {info['shape']}, spacing {tuple(round(s, 3) for s in info['spacing'])} mm,"
          f" {info['lesions']} lesion(s), liver {counts[1]} voxels, lesion {counts[2]} voxels")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kit.phantom", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample", help="(re)generate the sample study and its truth")
    s.add_argument("--root", default=".", help="repository root (default: .)")
    m = sub.add_parser("make", help="write one phantom")
    m.add_argument("--seed", type=int, required=True)
    m.add_argument("--out", required=True, help="CT path (.nii or .nii.gz)")
    m.add_argument("--labels", help="also write the label map here")
    m.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"))
    m.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), help="mm")
    m.add_argument("--noise", type=float, help="HU standard deviation (default: random 6-20)")
    m.add_argument("--orientation", default="RAS", help="stored axis codes, e.g. RAS, LPS, PIR")
    m.add_argument("--dtype", default="int16", choices=["int16", "float32"])
    d = sub.add_parser("dicom", help="write a NIfTI CT volume as a DICOM CT series (one file per slice)")
    d.add_argument("src", type=Path, help="NIfTI CT volume")
    d.add_argument("out", type=Path, help="folder for the series")
    d.add_argument("--syntax", default="explicit", choices=sorted(dicom.SYNTAXES))
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    if args.cmd == "dicom":
        paths = dicom.write_series(args.src, args.out, args.syntax)
        print(f"wrote {len(paths)} DICOM files ({args.syntax}) to {args.out} in {time.perf_counter() - t0:.1f} s")
        return 0
    if args.cmd == "sample":
        cfg, root = Sample(), Path(args.root)
        p = make_phantom(cfg.seed, cfg.shape, cfg.spacing, noise=cfg.noise)
        ct, lab = write(p, root / cfg.ct, labels_path=root / cfg.truth, orientation=cfg.orientation)
        series = dicom.write_series(ct, root / cfg.dicom)
        print(f"wrote {len(series)} DICOM CT files to {root / cfg.dicom}")
    else:
        p = make_phantom(args.seed, tuple(args.shape) if args.shape else None,
                         tuple(args.spacing) if args.spacing else None, noise=args.noise)
        ct, lab = write(p, args.out, labels_path=args.labels, orientation=args.orientation, dtype=args.dtype)
    _report(ct, lab, p.info, time.perf_counter() - t0, p.labels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
