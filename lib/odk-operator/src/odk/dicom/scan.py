"""Find DICOM files under folders (any nesting, any names) and group their instances into series."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from ..errors import shown
from ..files import files_under, unsafe_reason

log = logging.getLogger("odk.dicom")

# Modalities of objects that hold no image volume: structured reports, segmentations, presentation
# states, key object selections, RT objects, registrations, encapsulated documents.
NON_IMAGE_MODALITIES = frozenset({"SR", "SEG", "PR", "KO", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "REG",
                                  "DOC", "PLAN", "FID", "AU", "ECG"})


@dataclass
class Instance:
    path: Path
    ds: pydicom.Dataset

    @property
    def sop_uid(self) -> str:
        return str(self.ds.get("SOPInstanceUID", ""))


@dataclass
class Series:
    uid: str
    instances: list[Instance] = field(default_factory=list)

    @property
    def first(self) -> pydicom.Dataset:
        return self.instances[0].ds

    @property
    def modality(self) -> str:
        return str(self.first.get("Modality", ""))

    @property
    def description(self) -> str:
        return str(self.first.get("SeriesDescription", ""))

    def label(self) -> str:
        """How log lines name the series: its UID, number and description."""
        number = self.first.get("SeriesNumber", "")
        return f"series {self.uid} (#{number} {self.modality} '{self.description}')"

    def is_image(self) -> bool:
        return self.modality not in NON_IMAGE_MODALITIES and all("PixelData" in i.ds or
                                                                 "FloatPixelData" in i.ds for i in self.instances)


def dicom_files(roots: Iterable[Path]) -> list[Path]:
    """The files under each input entry that may be opened (app/inputfiles.py: no link out of the entry, no
    FIFO or other non-regular file; each skipped one is logged), hidden files left out."""
    files: list[Path] = []
    for root in roots:
        if root.is_file():
            files.append(root)
        elif root.is_dir():
            files.extend(sorted(p for p in files_under(root) if not p.name.startswith(".") and _openable(p, root)))
    return files


def _openable(path: Path, root: Path) -> bool:
    why = unsafe_reason(path, root)
    if why:
        log.info("skipping %s: %s", shown(path), why)
    return why is None


def read_instance(path: Path, pixels: bool = True) -> Instance | None:
    """The dataset of a DICOM file (Part 10 or a bare dataset with a valid header), or None with a log line."""
    try:
        # Pixel data is read when first used (defer_size): series that are not selected never load theirs.
        ds = pydicom.dcmread(path, stop_before_pixels=not pixels, defer_size="256 KB")
    except InvalidDicomError:
        log.info("skipping %s: not a DICOM file", path)
        return None
    except Exception as exc:  # truncated or garbled data: named, and the rest goes on
        why = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        log.warning("skipping %s: unreadable DICOM file (%s)", path, why)
        return None
    if "SOPInstanceUID" not in ds or "SeriesInstanceUID" not in ds:
        log.warning("skipping %s: unreadable DICOM file (no SOP/Series Instance UID)", path)
        return None
    return Instance(path, ds)


def group_series(instances: Iterable[Instance]) -> list[Series]:
    """Instances grouped by SeriesInstanceUID (in order of first appearance); exact copies of an instance
    (the same SOP Instance UID twice) are kept once, with a log line."""
    by_uid: dict[str, Series] = {}
    seen: dict[str, Path] = {}
    for inst in instances:
        if inst.sop_uid in seen:
            log.info("ignoring %s: another copy of instance %s (%s)", inst.path, inst.sop_uid, seen[inst.sop_uid])
            continue
        seen[inst.sop_uid] = inst.path
        uid = str(inst.ds.SeriesInstanceUID)
        by_uid.setdefault(uid, Series(uid)).instances.append(inst)
    return list(by_uid.values())


def scan(roots: Iterable[Path], pixels: bool = True) -> list[Series]:
    found = (read_instance(p, pixels) for p in dicom_files(roots))
    return group_series(i for i in found if i is not None)
