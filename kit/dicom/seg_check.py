"""Wait for a study's new SEG series in the PACS, describe it, and score it against a truth label map.

    python -m kit.dicom.seg_check --pacs-url URL --series-dir DIR [--known FILE] [--truth NIFTI] [--jobs-dir DIR]
                                  [--existing]
--known: a file of Orthanc series IDs that existed before (``--list-known`` writes it); the first SEG
series of the study not in it is the answer. Exit 1 with one line when none arrives in --timeout seconds,
or as soon as the listener's job for the study failed (its reason is the line). --existing: describe the SEG
the PACS already holds for the study (none: exit 1).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
from nibabel.processing import resample_from_to

from kit.dicom.orthanc import Rest
from kit.summary import dice


@dataclass(frozen=True)
class SegResult:
    orthanc_id: str
    study_uid: str
    series_uid: str
    referenced_series: tuple[str, ...]
    dataset: pydicom.Dataset


def study_uid_of(series_dir: Path) -> str:
    first = next(p for p in sorted(series_dir.rglob("*")) if p.is_file())
    return str(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID)


def seg_ids(rest: Rest, study_uid: str) -> set[str]:
    return {s["ID"] for s in rest.series("SEG", study_uid)}


def failed_job(jobs_dir: Path | None, study_uid: str, since: float) -> str | None:
    """The reason of a failed listener job for this study that finished after `since` (epoch seconds)."""
    if jobs_dir is None:
        return None
    for path in jobs_dir.glob("*/status.json"):
        if path.stat().st_mtime < since:
            continue
        try:
            status = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if status.get("study_instance_uid") == study_uid and status.get("state") == "failed":
            return f"job {status['job']} failed: {status.get('reason')} (see {path.parent / 'job.log'})"
    return None


def referenced_series(ds: pydicom.Dataset) -> tuple[str, ...]:
    return tuple(str(item.SeriesInstanceUID) for item in ds.get("ReferencedSeriesSequence", []))


def wait_new_seg(rest: Rest, study_uid: str, known: set[str], timeout: float,
                 jobs_dir: Path | None = None) -> SegResult:
    """The first SEG series of study_uid not in known, once it has an instance; RuntimeError otherwise."""
    start, deadline = time.time(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        for series in rest.series("SEG", study_uid):
            if series["ID"] in known or not series.get("Instances"):
                continue
            data = rest.get_bytes(f"/instances/{series['Instances'][0]}/file")
            ds = pydicom.dcmread(io.BytesIO(data))
            return SegResult(series["ID"], study_uid, str(ds.SeriesInstanceUID), referenced_series(ds), ds)
        why = failed_job(jobs_dir, study_uid, start)
        if why:
            raise RuntimeError(why)
        time.sleep(0.1)
    raise RuntimeError(f"no new SEG series in study {study_uid} arrived in the PACS within {timeout:g} s")


def seg_label_image(ds: pydicom.Dataset) -> nib.Nifti1Image:
    """The SEG as one label map (segment n -> value n) in RAS world coordinates."""
    seg = hd.seg.Segmentation.from_dataset(ds)
    volume = seg.get_volume(combine_segments=True, dtype=np.uint8)
    return volume.to_patient_orientation("RAH").to_nibabel()


def labels_on_grid(labels: nib.Nifti1Image, target: nib.Nifti1Image) -> np.ndarray:
    """Nearest-neighbour resampling of a label map onto target's grid, exact on a shared grid: a one-voxel
    zero border plus mode 'nearest' keeps voxels on the source's edge (a point a rounding error outside the
    source is not lost) and leaves everything beyond it 0."""
    padded = np.pad(np.asanyarray(labels.dataobj), 1)
    shift = np.eye(4)
    shift[:3, 3] = -1.0
    source = nib.Nifti1Image(padded, labels.affine @ shift)
    return np.asarray(resample_from_to(source, target, order=0, mode="nearest").dataobj)


def truth_dice(ds: pydicom.Dataset, truth_path: Path) -> tuple[float, float]:
    """Dice (liver incl. lesions, lesion) of the SEG against a truth label map, on the truth's grid."""
    truth = nib.load(str(truth_path))
    labels = labels_on_grid(seg_label_image(ds), truth)
    want = np.asanyarray(truth.dataobj)
    return dice(labels > 0, want > 0), dice(labels == 2, want == 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kit.dicom.seg_check", description=__doc__.splitlines()[0])
    ap.add_argument("--pacs-url", required=True)
    ap.add_argument("--series-dir", type=Path, required=True, help="the series that was sent (for its study)")
    ap.add_argument("--known", type=Path, help="Orthanc IDs of SEG series that existed before")
    ap.add_argument("--list-known", action="store_true", help="write the study's SEG series IDs to --known")
    ap.add_argument("--truth", type=Path)
    ap.add_argument("--jobs-dir", type=Path)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--existing", action="store_true", help="describe a SEG of the study the PACS holds already")
    args = ap.parse_args(argv)
    rest = Rest(args.pacs_url)
    study = study_uid_of(args.series_dir)
    if args.list_known:
        assert args.known is not None
        args.known.write_text("\n".join(sorted(seg_ids(rest, study))) + "\n", encoding="utf-8")
        return 0
    known = set(args.known.read_text().split()) if args.known and args.known.is_file() else set()
    try:
        if args.existing:
            result = wait_new_seg(rest, study, set(), 0.5)
        else:
            result = wait_new_seg(rest, study, known, args.timeout, args.jobs_dir)
    except RuntimeError as exc:
        print(f"[odk] error: {exc}", file=sys.stderr)
        return 1
    print(f"SEG in the PACS: study {result.study_uid}")
    print(f"  SEG series  {result.series_uid} ({len(result.dataset.SegmentSequence)} segment(s): "
          f"{', '.join(str(s.SegmentLabel) for s in result.dataset.SegmentSequence)})")
    print(f"  references  series {', '.join(result.referenced_series) or '(none)'}")
    print(f"  look at it  {args.pacs_url}/app/explorer.html#series?uuid={result.orthanc_id}")
    if args.truth and args.truth.is_file():
        liver, lesion = truth_dice(result.dataset, args.truth)
        print(f"  Dice vs truth: liver {liver:.3f} (organ, lesions included), lesion {lesion:.3f}  ({args.truth})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
