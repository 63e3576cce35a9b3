"""DICOM figures of ``make bench``: the dicom-reader against dcm2niix on the same 512 x 512 x 200 CT series,
and the time to write that series' DICOM SEG.

Both converters run as child processes on the same files (wall time from process start to exit); the
reader's own time (scan + decode + write, in its log) is reported too. ``python -m kit.bench.dicom`` runs
these figures alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from kit.bench import report
from kit.bench.measure import median
from kit.bench.volumes import SIZES, cache_key, phantom_study
from kit.paths import ROOT
from kit.phantom import dicom as phantom_dicom

DCM2NIIX = str(Path(sys.executable).with_name("dcm2niix"))
GOAL = "reader/dcm2niix"  # reader wall time / dcm2niix wall time; its bound is in kit.bench.report.TARGETS
log = logging.getLogger("kit.bench")


def series(cache: Path, seed: int = 1, size_name: str = "ct") -> Path:
    """A bench phantom (by default the 512 x 512 x 200 one) as a DICOM CT series, cached beside its NIfTI."""
    size = SIZES[size_name]
    folder = cache / cache_key(size, seed) / "dicom"
    if not (folder / f"CT.{size.shape[2]:04d}.dcm").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        phantom_dicom.write_series(phantom_study(cache, size, seed), folder)
    return folder


def _env(inputs: str, outputs: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVIDIA_", "DICOM_"))}
    env.update({"NVIDIA_CLARA_INPUTPATHS": inputs, "NVIDIA_CLARA_OUTPUTPATHS": outputs,
                "NVIDIA_CLARA_NOSYNCLOCK": "TRUE"})
    return env


def _timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=900)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-400:]
        raise RuntimeError(f"{' '.join(argv[:3])} failed (exit {proc.returncode}): {tail}")
    return wall, proc.stdout + proc.stderr


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _labels(volume: Path, dest: Path) -> None:
    """A label map on the series' grid (liver = soft tissue 40..80 HU, lesion = 80..200 HU) and its report."""
    img = nib.load(volume)
    hu = np.asarray(img.dataobj)
    labels = np.where((hu > 40) & (hu <= 80), 1, 0) + np.where((hu > 80) & (hu <= 200), 2, 0)
    stem = volume.name[: -len(".nii")]
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), img.affine), dest / f"{stem}_seg.nii.gz")
    report = {"labels": {"background": {"label": 0}, "liver": {"label": 1}, "lesion": {"label": 2}},
              "model": {"name": "segmentation_liver_v1", "version": "1"}}
    (dest / f"{stem}.json").write_text(json.dumps(report))


def bench_dicom(cache: Path, work: Path, repeats: int = 3, seed: int = 1, size_name: str = "ct") -> dict:
    size = SIZES[size_name]
    src = series(cache, seed, size_name)
    mb = sum(p.stat().st_size for p in src.iterdir()) / 2**20
    log.info("DICOM: %s (%d files, %.0f MB); reader vs dcm2niix, %d runs each", src, size.shape[2], mb, repeats)
    reader, own, d2n, seg = [], [], [], []
    volumes = work / "dicom-reader"
    for i in range(repeats):
        d2n_out = _fresh(work / "dcm2niix")
        d2n.append(_timed([DCM2NIIX, "-z", "n", "-b", "n", "-f", "series", "-o", str(d2n_out), str(src)])[0])
        _fresh(volumes)
        reader.append(_timed([sys.executable, "-u", "-m", "app.dicom.reader"],
                             _env(f"payload:{src}", f"dicom-reader/volumes:{volumes}"))[0])
        own.append(json.loads((volumes / "reader-report.json").read_text())["seconds"])
        log.info("DICOM run %d: reader %.2f s (%.2f s converting), dcm2niix %.2f s", i, reader[-1], own[-1], d2n[-1])
    (volume,) = volumes.glob("*.nii")
    labels = _fresh(work / "labels")
    _labels(volume, labels)
    for i in range(repeats):
        out = _fresh(work / "seg")
        wall, text = _timed([sys.executable, "-u", "-m", "app.dicom.segwriter"],
                            _env(f"payload:{src};dicom-reader/volumes:{volumes};segmentation/segmentation:{labels}",
                                 f"dicom-seg-writer/seg:{out}"))
        m = re.search(r"wrote \S+ \(series \S+\) in ([\d.]+) s", text)  # the writer's own time, in its log
        writing = float(m[1]) if m else float("nan")
        seg.append((wall, writing))
        log.info("DICOM run %d: SEG writer %.2f s (%.2f s writing)", i, wall, writing)
    seg_file = next((work / "seg").glob("*.dcm"))
    ratio = round(median(reader) / median(d2n), 2)
    # run i of both ran back to back: the median of per-run ratios cancels drifts of a shared machine's load
    paired = round(median([r / d for r, d in zip(reader, d2n, strict=True)]), 2)
    return {"series": {"folder": str(src), "shape": list(size.shape), "files": size.shape[2], "mb": round(mb, 1)},
            "reader_wall_s": round(median(reader), 3), "dcm2niix_wall_s": round(median(d2n), 3),
            "reader_converting_s": round(median(own), 3),
            "reader/dcm2niix": ratio, "reader/dcm2niix (paired)": paired,
            "reader_converting/dcm2niix": round(median(own) / median(d2n), 2),
            "target": report.check_targets({GOAL: ratio})[GOAL],
            "seg_writer_wall_s": round(median([w for w, _ in seg]), 3),
            "seg_write_s": round(median([o for _, o in seg]), 3),
            "seg_mb": round(seg_file.stat().st_size / 2**20, 1), "runs": repeats,
            "reader_runs_s": [round(r, 3) for r in reader], "dcm2niix_runs_s": [round(r, 3) for r in d2n]}


def report_lines(fig: dict | None) -> list[str]:
    if not fig:
        return []
    check = fig["target"]
    shape = "x".join(map(str, fig["series"]["shape"]))
    return [f"DICOM reader vs dcm2niix on {shape} ({fig['series']['mb']:.0f} MB): {fig['reader_wall_s']:.2f} s"
            f" vs {fig['dcm2niix_wall_s']:.2f} s = {fig['reader/dcm2niix']:.2f}x"
            f" (paired {fig['reader/dcm2niix (paired)']:.2f}x)   target {check['target']}:"
            f" {'MET' if check['met'] else 'MISSED'}; converting alone (no start-up)"
            f" {fig['reader_converting_s']:.2f} s = {fig['reader_converting/dcm2niix']:.2f}x",
            f"DICOM SEG writer on that series: {fig['seg_writer_wall_s']:.2f} s process, {fig['seg_write_s']:.2f} s"
            f" writing ({fig['seg_mb']:.1f} MB SEG)"]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[bench] %(message)s")
    p = argparse.ArgumentParser(prog="python -m kit.bench.dicom", description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cache", type=Path, default=ROOT / ".cache/bench")
    p.add_argument("--out", type=Path, default=ROOT / ".run/bench")
    args = p.parse_args(argv)
    fig = bench_dicom(args.cache, args.out / "work-dicom", args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dicom-latest.json").write_text(json.dumps(fig, indent=2) + "\n")
    print("\n".join(report_lines(fig)))
    print(f"results: {args.out / 'dicom-latest.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
