"""One image series -> a NIfTI volume in HU on its RAS affine, and its JSON sidecar."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from isal import igzip
from pydicom.dataelem import RawDataElement
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..files import atomic_write_bytes, atomic_write_parts
from .geometry import SeriesGeometry, SeriesRefused, series_geometry
from .scan import Instance, Series

SIDECAR_SUFFIX = ".dicom.json"


@dataclass(frozen=True)
class SeriesVolume:
    data: np.ndarray  # (columns, rows, slices): NIfTI voxel (i, j, k)
    affine: np.ndarray  # RAS
    geometry: SeriesGeometry


NATIVE = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})
UNDEFINED_LENGTH = 0xFFFFFFFF


def native_dtype(ds: pydicom.Dataset) -> np.dtype | None:
    """The voxel type of uncompressed little-endian 8/16-bit greyscale pixel data, whose bytes are the stored
    values as they are (no decoding to do); None for everything else (compressed transfer syntaxes, odd bit
    depths, colour), which goes through pydicom's decoders."""
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    bits, signed = int(ds.get("BitsAllocated", 0)), int(ds.get("PixelRepresentation", 0))
    if (ts in NATIVE and bits in (8, 16) and int(ds.get("BitsStored", bits)) == bits
            and int(ds.get("SamplesPerPixel", 1)) == 1 and "PixelData" in ds):
        return np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    return None


def read_native(inst: Instance, out: np.ndarray) -> None:
    """The stored values of an uncompressed single-frame image, read into ``out`` (rows, columns; its
    native_dtype): straight from the file at the offset pydicom's parse found for the (deferred) pixel data,
    else from the value pydicom already holds."""
    elem = inst.ds.get_item("PixelData", keep_deferred=True)
    if isinstance(elem, RawDataElement) and elem.value is None and elem.length != UNDEFINED_LENGTH:
        if elem.length < out.nbytes:
            raise ValueError(f"{elem.length} bytes of pixel data for {out.shape[0]}x{out.shape[1]} pixels")
        with inst.path.open("rb", buffering=0) as fh:
            fh.seek(elem.value_tell)
            if fh.readinto(memoryview(out).cast("B")) != out.nbytes:
                raise ValueError("the file ends inside its pixel data")
        return
    out[...] = np.frombuffer(inst.ds.PixelData, dtype=out.dtype, count=out.size).reshape(out.shape)


def hu_slices(series: Series, order: tuple[int, ...]) -> np.ndarray:
    """Decoded pixels, rescaled to HU, stacked (slices, rows, columns); int16 when exact, else float32."""
    slopes, intercepts = [], []
    stored: np.ndarray | None = None
    for k, idx in enumerate(order):
        inst = series.instances[idx]
        try:
            dtype = native_dtype(inst.ds)
            plane = None if dtype is not None else inst.ds.pixel_array
            if stored is None:
                shape = (int(inst.ds.Rows), int(inst.ds.Columns))
                stored = np.empty((len(order), *shape), dtype=dtype if plane is None else plane.dtype)
            if plane is None and dtype == stored.dtype:
                read_native(inst, stored[k])  # no copy of the bytes in between
            else:
                stored[k] = inst.ds.pixel_array if plane is None else plane
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
            # uint16 values up to 32767 are the same bits as int16: a view, not a copy
            out = stored.view(np.int16) if stored.dtype == np.uint16 else stored.astype(np.int16, copy=False)
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


def nifti_parts(vol: SeriesVolume, description: str) -> list[bytes | memoryview]:
    """The single-file NIfTI-1 that nibabel's ``to_bytes`` makes, byte for byte (tested), as its pieces: the
    header nibabel makes, the "no extensions" flag, and the voxels. They are stored as they are (no scaling),
    and the (columns, rows, slices) Fortran-order array is the C-order (slices, rows, columns) stack, so its
    memory is the file's data block as it is: no copy of the voxels."""
    hdr = nifti_header(vol, description)
    hdr.set_data_offset(352)  # 348-byte header + 4-byte "no extensions" flag
    hdr.set_slope_inter(1.0, 0.0)
    stack = vol.data.transpose(2, 1, 0)
    if not stack.flags.c_contiguous or stack.dtype != hdr.get_data_dtype():
        return [nib.Nifti1Image(vol.data, vol.affine, hdr).to_bytes()]
    return [hdr.binaryblock, b"\0\0\0\0", memoryview(stack).cast("B")]


def nifti_bytes(vol: SeriesVolume, description: str, compress: bool) -> bytes:
    """The NIfTI file of ``nifti_parts`` as one bytes object, gzipped (isal, level 1) when ``compress``."""
    raw = b"".join(nifti_parts(vol, description))
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
    description = f"{series.modality} {series.description}"
    if compress:
        atomic_write_bytes(nifti, nifti_bytes(vol, description, compress))
    else:
        atomic_write_parts(nifti, nifti_parts(vol, description))
    meta = sidecar(series, vol, nifti.name, input_roots)
    atomic_write_bytes(out_dir / f"{series.uid}{SIDECAR_SUFFIX}", (json.dumps(meta, indent=2) + "\n").encode())
    return nifti, vol
