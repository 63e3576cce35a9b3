"""One image series -> a NIfTI volume in HU on its RAS affine, and its JSON sidecar."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from isal import igzip
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from app.niftiio import atomic_write_bytes

from .geometry import SeriesGeometry, SeriesRefused, series_geometry
from .scan import Series

SIDECAR_SUFFIX = ".dicom.json"


@dataclass(frozen=True)
class SeriesVolume:
    data: np.ndarray  # (columns, rows, slices): NIfTI voxel (i, j, k)
    affine: np.ndarray  # RAS
    geometry: SeriesGeometry


NATIVE = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})


def pixels(ds: pydicom.Dataset) -> np.ndarray:
    """The stored pixel values of one single-frame image (rows, columns).

    Uncompressed little-endian 8/16-bit greyscale is a view of the bytes as they are (no decoding to do);
    everything else (compressed transfer syntaxes, odd bit depths) goes through pydicom's decoders.
    """
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    bits, signed = int(ds.get("BitsAllocated", 0)), int(ds.get("PixelRepresentation", 0))
    if (ts in NATIVE and bits in (8, 16) and int(ds.get("BitsStored", bits)) == bits
            and int(ds.get("SamplesPerPixel", 1)) == 1 and "PixelData" in ds):
        dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
        rows, cols = int(ds.Rows), int(ds.Columns)
        return np.frombuffer(ds.PixelData, dtype=dtype, count=rows * cols).reshape(rows, cols)
    return ds.pixel_array


def hu_slices(series: Series, order: tuple[int, ...]) -> np.ndarray:
    """Decoded pixels, rescaled to HU, stacked (slices, rows, columns); int16 when exact, else float32."""
    slopes, intercepts = [], []
    stored: np.ndarray | None = None
    for k, idx in enumerate(order):
        inst = series.instances[idx]
        try:
            plane = pixels(inst.ds)
            if stored is None:
                stored = np.empty((len(order), *plane.shape), dtype=plane.dtype)
            stored[k] = plane
        except Exception as exc:
            raise SeriesRefused(f"instance {inst.sop_uid} ({inst.path.name}): pixel data cannot be decoded "
                                f"({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})") from exc
        slopes.append(float(inst.ds.get("RescaleSlope", 1.0) or 1.0))
        intercepts.append(float(inst.ds.get("RescaleIntercept", 0.0) or 0.0))
    assert stored is not None
    slope, intercept = np.array(slopes), np.array(intercepts)
    if np.all(slope == 1) and np.all(intercept == intercept[0]) and intercept[0] == round(intercept[0]) \
            and stored.dtype.kind in "iu" and stored.size:
        lo, hi, shift = int(stored.min()), int(stored.max()), int(intercept[0])
        if lo >= -32768 and hi <= 32767 and lo + shift >= -32768 and hi + shift <= 32767:
            out = stored.astype(np.int16, copy=False)
            out += np.int16(shift)  # in place: the array is our own
            return out
    hu = stored * slope[:, None, None] + intercept[:, None, None]
    if np.array_equal(hu, np.round(hu)) and hu.size and hu.min() >= -32768 and hu.max() <= 32767:
        return hu.astype(np.int16)
    return hu.astype(np.float32)


def series_volume(series: Series) -> SeriesVolume:
    geom = series_geometry([i.ds for i in series.instances])
    slices = hu_slices(series, geom.order)
    # (slices, rows, columns) in C order is (columns, rows, slices) in Fortran order: NIfTI's own, no copy
    return SeriesVolume(data=slices.transpose(2, 1, 0), affine=geom.nifti_affine(), geometry=geom)


def nifti_header(vol: SeriesVolume, description: str) -> nib.Nifti1Header:
    img = nib.Nifti1Image(vol.data, vol.affine)
    img.set_sform(vol.affine, code=1)  # scanner coordinates
    img.set_qform(vol.affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = description.encode()[:79]
    img.update_header()
    return img.header


def nifti_bytes(vol: SeriesVolume, description: str, compress: bool) -> bytes:
    """The single-file NIfTI-1 that nibabel's ``to_bytes`` makes, byte for byte (tested), in one copy: the
    voxels are stored as they are (no scaling), and the (columns, rows, slices) Fortran-order array is the
    C-order (slices, rows, columns) stack, so its memory is the file's data block as it is."""
    hdr = nifti_header(vol, description)
    hdr.set_data_offset(352)  # 348-byte header + 4-byte "no extensions" flag
    hdr.set_slope_inter(1.0, 0.0)
    stack = vol.data.transpose(2, 1, 0)
    if not stack.flags.c_contiguous or stack.dtype != hdr.get_data_dtype():
        img = nib.Nifti1Image(vol.data, vol.affine, hdr)
        raw = img.to_bytes()
    else:
        raw = b"".join((hdr.binaryblock, b"\0\0\0\0", memoryview(stack).cast("B")))
    return igzip.compress(raw, compresslevel=1, mtime=0) if compress else raw


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


def write_series(series: Series, out_dir: Path, input_roots: list[Path],
                 compress: bool = False) -> tuple[Path, SeriesVolume]:
    """Write ``<SeriesInstanceUID>.nii`` (``.nii.gz`` when ``compress``) and ``<SeriesInstanceUID>.dicom.json``,
    each atomically, the sidecar last."""
    vol = series_volume(series)
    nifti = out_dir / f"{series.uid}.nii{'.gz' if compress else ''}"
    atomic_write_bytes(nifti, nifti_bytes(vol, f"{series.modality} {series.description}", compress))
    meta = sidecar(series, vol, nifti.name, input_roots)
    atomic_write_bytes(out_dir / f"{series.uid}{SIDECAR_SUFFIX}", (json.dumps(meta, indent=2) + "\n").encode())
    return nifti, vol
