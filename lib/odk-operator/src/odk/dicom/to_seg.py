"""The dicom-seg-writer's run: each ``<stem>_seg.nii.gz`` + its ``<stem>.dicom.json`` sidecar + the series'
DICOM instances (found by SOP Instance UID under the inputs) -> ``<stem>_seg.dcm``."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.filebase import DicomBytesIO

from ..files import atomic_write_bytes
from ..report import LabelMapResult, read_result
from .geometry import SeriesRefused, series_geometry
from .scan import dicom_files, read_instance
from .seg import Algorithm, SegError, build_seg, labels_on_series
from .volume import SIDECAR_SUFFIX

log = logging.getLogger("odk.dicom")
LABEL_SUFFIX = "_seg.nii.gz"


@dataclass(frozen=True)
class Job:
    stem: str
    labels: Path
    sidecar: Path
    report: Path | None  # the segmentation's <stem>.json (model name, version, labels)


@dataclass
class WriteSummary:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def find_jobs(inputs: Sequence[Path], summary: WriteSummary) -> list[Job]:
    files = dicom_files(inputs)
    sidecars = {p.name[: -len(SIDECAR_SUFFIX)]: p for p in files if p.name.endswith(SIDECAR_SUFFIX)}
    jobs = []
    for p in files:
        if not p.name.endswith(LABEL_SUFFIX):
            continue
        stem = p.name[: -len(LABEL_SUFFIX)]
        if stem not in sidecars:
            log.error("FAILED %s: no %s%s (the dicom-reader's sidecar) under the inputs", p, stem, SIDECAR_SUFFIX)
            summary.failed.append((stem, "no sidecar"))
            continue
        report = p.with_name(f"{stem}.json")
        jobs.append(Job(stem, p, sidecars[stem], report if report.is_file() else None))
    return jobs


def algorithm(job: Job, fallback: Algorithm | None) -> Algorithm:
    if job.report is not None:
        rep = read_result(job.report)
        if not isinstance(rep, LabelMapResult) or not rep.labels:
            raise SegError(f"{job.report.name} is not the report of a label map (it has no 'labels')")
        labels = sorted(rep.labels.items(), key=lambda kv: kv[1].label)
        return Algorithm(name=str(rep.model["name"]), version=str(rep.model["version"]),
                         labels=tuple(name for name, _ in labels))
    if fallback is None:
        raise SegError(f"no segmentation report {job.stem}.json beside the label map (model name, version, "
                       "labels); set SEG_MODEL_CONFIG to the model's config.pbtxt")
    return fallback


def source_instances(meta: dict, inputs: Sequence[Path], index: dict[str, Path]) -> list[pydicom.Dataset]:
    """The series' instances in the sidecar's slice order: at their recorded paths, else found by UID."""
    wanted = meta["sop_instance_uids"]
    out: list[pydicom.Dataset] = []
    for uid, rel in zip(wanted, meta["source_files"], strict=True):
        ds = None
        for root in inputs:
            cand = root / rel if root.is_dir() else root
            if cand.is_file():
                inst = read_instance(cand, pixels=False)
                if inst is not None and inst.sop_uid == uid:
                    ds = inst.ds
                    break
        if ds is None:
            if not index:
                index.update(index_instances(inputs))
            if uid not in index:
                raise SegError(f"source instance {uid} of series {meta['series_instance_uid']} is not under the inputs")
            ds = pydicom.dcmread(index[uid], stop_before_pixels=True)
        out.append(ds)
    return out


def index_instances(inputs: Sequence[Path]) -> dict[str, Path]:
    found = {}
    for p in dicom_files(inputs):
        if p.suffix.lower() in (".json", ".gz", ".nii", ".png", ".csv"):
            continue
        inst = read_instance(p, pixels=False)
        if inst is not None:
            found.setdefault(inst.sop_uid, p)
    return found


def write_one(job: Job, inputs: Sequence[Path], out_dir: Path, fallback: Algorithm | None,
              index: dict[str, Path]) -> Path:
    meta = json.loads(job.sidecar.read_text())
    algo = algorithm(job, fallback)
    sources = source_instances(meta, inputs, index)
    try:
        geom = series_geometry(sources)
    except SeriesRefused as exc:
        raise SegError(f"the source series is not one volume ({exc})") from exc
    if [sources[i].SOPInstanceUID for i in geom.order] != meta["sop_instance_uids"]:
        raise SegError("the source instances are not in the sidecar's slice order")
    img = nib.load(job.labels)
    if list(img.shape[:3]) != list(meta["shape"]) or not np.allclose(img.affine, meta["affine_ras"], atol=1e-3):
        raise SegError(f"the label map (shape {list(img.shape)}) is not on its series' grid (shape {meta['shape']},"
                       " the sidecar's affine_ras)")
    labels = labels_on_series(img, geom, meta["frame_of_reference_uid"])
    number = int(meta.get("series_number") or 0) + 1000
    seg = build_seg(sources, labels, algo, number, f"{algo.name} SEG of {meta.get('series_description', '')}")
    dest = out_dir / f"{job.stem}_seg.dcm"
    with DicomBytesIO() as buf:
        seg.save_as(buf, enforce_file_format=True)
        atomic_write_bytes(dest, buf.getvalue())
    return dest


def write_all(inputs: Sequence[Path], out_dir: Path, fallback: Algorithm | None) -> WriteSummary:
    summary = WriteSummary()
    inputs = [p.resolve() for p in inputs]
    index: dict[str, Path] = {}
    for job in find_jobs(inputs, summary):
        t0 = time.perf_counter()
        try:
            dest = write_one(job, inputs, out_dir, fallback, index)
        except (SegError, OSError, ValueError, KeyError) as exc:
            log.error("FAILED %s: %s", job.labels, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            summary.failed.append((job.stem, str(exc)))
            continue
        log.info("wrote %s (series %s) in %.2f s", dest.name, job.stem, time.perf_counter() - t0)
        summary.written.append(dest)
    return summary
