"""One image series -> a NIfTI volume in HU on its RAS affine, and its JSON sidecar."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip

from app.niftiio import atomic_write_bytes

from .geometry import SeriesGeometry, SeriesRefused, series_geometry
from .scan import Series

SIDECAR_SUFFIX = ".dicom.json"


@dataclass(frozen=True)
class SeriesVolume:
    data: np.ndarray  # (columns, rows, slices): NIfTI voxel (i, j, k)
    affine: np.ndarray  # RAS
    geometry: SeriesGeometry


def hu_slices(series: Series, order: tuple[int, ...]) -> np.ndarray:
    """Decoded pixels, rescaled to HU, stacked (slices, rows, columns); int16 when exact, else float32."""
    slopes, intercepts, planes = [], [], []
    for idx in order:
        inst = series.instances[idx]
        try:
            planes.append(inst.ds.pixel_array)
        except Exception as exc:
            raise SeriesRefused(f"instance {inst.sop_uid} ({inst.path.name}): pixel data cannot be decoded "
                                f"({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})") from exc
        slopes.append(float(inst.ds.get("RescaleSlope", 1.0) or 1.0))
        intercepts.append(float(inst.ds.get("RescaleIntercept", 0.0) or 0.0))
    stored = np.stack(planes)
    slope, intercept = np.array(slopes)[:, None, None], np.array(intercepts)[:, None, None]
    integral = np.all(slope == np.round(slope)) and np.all(intercept == np.round(intercept))
    if integral:
        lo = stored.min() * slope.min() + intercept.min() if stored.size else 0
        hi = stored.max() * slope.max() + intercept.max() if stored.size else 0
        if min(lo, hi) >= -32768 and max(lo, hi) <= 32767:
            if np.all(slope == 1):
                return (stored.astype(np.int32) + intercept.astype(np.int32)).astype(np.int16)
            return (stored * slope + intercept).astype(np.int16)
    return (stored * slope + intercept).astype(np.float32)


def series_volume(series: Series) -> SeriesVolume:
    geom = series_geometry([i.ds for i in series.instances])
    slices = hu_slices(series, geom.order)
    return SeriesVolume(data=np.ascontiguousarray(slices.transpose(2, 1, 0)), affine=geom.nifti_affine(),
                        geometry=geom)


def nifti_bytes(vol: SeriesVolume, description: str) -> bytes:
    img = nib.Nifti1Image(vol.data, vol.affine)
    img.set_sform(vol.affine, code=1)  # scanner coordinates
    img.set_qform(vol.affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = description.encode()[:79]
    return igzip.compress(img.to_bytes(), compresslevel=1, mtime=0)


def sidecar(series: Series, vol: SeriesVolume, nifti_name: str, input_roots: list[Path]) -> dict:
    ds = series.first
    ordered = [series.instances[i] for i in vol.geometry.order]

    def rel(path: Path) -> str:
        for root in input_roots:
            if path.is_relative_to(root):
                return str(path.relative_to(root))
        return str(path)

    return {
        "nifti": nifti_name,
        "study_instance_uid": str(ds.get("StudyInstanceUID", "")),
        "series_instance_uid": series.uid,
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "")),
        "modality": series.modality,
        "series_number": int(ds.SeriesNumber) if ds.get("SeriesNumber") not in (None, "") else None,
        "series_description": series.description,
        "patient_id": str(ds.get("PatientID", "")),
        "sop_class_uid": str(ds.get("SOPClassUID", "")),
        "shape": list(vol.data.shape),
        "dtype": str(vol.data.dtype),
        "spacing_mm": [vol.geometry.pixel_spacing[1], vol.geometry.pixel_spacing[0],
                       round(vol.geometry.slice_spacing, 6)],
        "affine_ras": np.round(vol.affine, 6).tolist(),
        "transfer_syntaxes": sorted({str(i.ds.file_meta.TransferSyntaxUID) for i in ordered
                                     if "TransferSyntaxUID" in getattr(i.ds, "file_meta", {})}),
        "sop_instance_uids": [i.sop_uid for i in ordered],  # NIfTI slice k = entry k
        "source_files": [rel(i.path) for i in ordered],
    }


def write_series(series: Series, out_dir: Path, input_roots: list[Path]) -> tuple[Path, SeriesVolume]:
    """Write ``<SeriesInstanceUID>.nii.gz`` and ``<SeriesInstanceUID>.dicom.json`` atomically (sidecar last)."""
    vol = series_volume(series)
    nifti = out_dir / f"{series.uid}.nii.gz"
    atomic_write_bytes(nifti, nifti_bytes(vol, f"{series.modality} {series.description}"))
    meta = sidecar(series, vol, nifti.name, input_roots)
    atomic_write_bytes(out_dir / f"{series.uid}{SIDECAR_SUFFIX}", (json.dumps(meta, indent=2) + "\n").encode())
    return nifti, vol
