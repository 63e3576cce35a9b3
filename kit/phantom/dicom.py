"""A CT volume (NIfTI) written as a DICOM CT Image Storage series: one file per slice, like a scanner sends.

``python -m kit.phantom dicom SRC OUT_DIR [--syntax explicit|rle|jpeg2000]``; ``make phantoms`` writes the
sample study's series to local/input-dicom/. UIDs are derived from the input's bytes, so the same NIfTI
always gives the same series.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

from odk import atomic_write_bytes

SYNTAXES = {"explicit": ExplicitVRLittleEndian, "rle": RLELossless, "jpeg2000": JPEG2000Lossless}
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
INTERCEPT = -1024


@dataclass(frozen=True)
class StudyInfo:
    patient_name: str = "ODK^Phantom"
    patient_id: str = "ODK-PHANTOM-001"
    study_description: str = "CT ABDOMEN (synthetic phantom)"
    series_description: str = "Abdomen 3.0 (synthetic)"
    series_number: int = 2
    study_date: str = "20260101"
    study_time: str = "093000"
    accession: str = "ODK0001"


def _uid(seed: str, *parts: object) -> str:
    return generate_uid(entropy_srcs=[seed, *map(str, parts)])


def slices_from_nifti(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    """The volume in HU as (slices, rows, columns) with the LPS affine of (column, row, slice) indices."""
    data = np.asanyarray(img.dataobj)
    lps = RAS_TO_LPS @ img.affine
    return np.round(data).astype(np.int32).transpose(2, 1, 0), lps


def datasets(hu: np.ndarray, lps: np.ndarray, info: StudyInfo, seed: str) -> Iterator[pydicom.Dataset]:
    """One CT Image Storage dataset per slice (uncompressed, signed 16 bit, intercept -1024)."""
    n, rows, cols = hu.shape
    col_spacing, row_spacing = (float(np.linalg.norm(lps[:3, i])) for i in (0, 1))
    row_cos, col_cos = lps[:3, 0] / col_spacing, lps[:3, 1] / row_spacing
    thickness = float(np.linalg.norm(lps[:3, 2]))
    study, series, frame = _uid(seed, "study"), _uid(seed, "series"), _uid(seed, "for")
    stored = np.clip(hu - INTERCEPT, -32768, 32767).astype(np.int16)
    for k in range(n):
        ipp = lps[:3, :3] @ np.array([0.0, 0.0, k]) + lps[:3, 3]
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = _uid(seed, "sop", k)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = info.study_date
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = info.study_time
        ds.AccessionNumber = info.accession
        ds.Modality = "CT"
        ds.Manufacturer = "ODK"
        ds.InstitutionName = "ODK synthetic data"
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = info.study_description
        ds.SeriesDescription = info.series_description
        ds.ManufacturerModelName = "kit.phantom"
        ds.PatientName = info.patient_name
        ds.PatientID = info.patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.BodyPartExamined = "ABDOMEN"
        ds.SliceThickness = f"{thickness:.6g}"
        ds.KVP = "120"
        ds.PatientPosition = "FFS"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.StudyID = "1"
        ds.SeriesNumber = info.series_number
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row_cos, *col_cos)]
        ds.FrameOfReferenceUID = frame
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = f"{float(ipp @ np.cross(row_cos, col_cos)):.6f}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.PixelSpacing = [f"{row_spacing:.6g}", f"{col_spacing:.6g}"]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = str(INTERCEPT), "1", "HU"
        ds.PixelData = stored[k].tobytes()
        yield ds


def write_series(src: Path, out_dir: Path, syntax: str = "explicit", info: StudyInfo | None = None) -> list[Path]:
    """Write ``src`` (NIfTI CT) as ``out_dir/CT.<n>.dcm``, atomically per file; returns the paths."""
    if syntax not in SYNTAXES:
        raise ValueError(f"syntax must be one of {', '.join(SYNTAXES)}, not {syntax!r}")
    seed = hashlib.sha256(src.read_bytes()).hexdigest()
    hu, lps = slices_from_nifti(nib.load(src))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, ds in enumerate(datasets(hu, lps, info or StudyInfo(), seed)):
        if syntax != "explicit":
            ds.compress(SYNTAXES[syntax])
        path = out_dir / f"CT.{k + 1:04d}.dcm"
        with pydicom.filebase.DicomBytesIO() as buf:
            ds.save_as(buf, enforce_file_format=True)
            atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths
