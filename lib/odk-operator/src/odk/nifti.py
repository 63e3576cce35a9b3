"""Reading CT volumes and writing label maps as NIfTI; every output appears atomically.

gzip is (de)compressed with python-isal (several times faster than zlib); nibabel does the rest.
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import nibabel as nib
import numpy as np
from isal import igzip

from . import guards
from .errors import StudyError
from .files import NIFTI_SUFFIXES, is_nifti, stem  # noqa: F401  # importable from here too


@dataclass
class Volume:
    """A 3D volume as stored in its file: voxels (no reorientation), affine, header.

    >>> vol = read_volume(Path("ct.nii.gz"))
    >>> vol.data.shape, vol.spacing                # (320, 320, 64), (0.9, 0.9, 3.0)
    """

    data: np.ndarray  # 3D, as stored (no reorientation), native dtype where possible
    affine: np.ndarray
    header: nib.Nifti1Header | nib.Nifti2Header
    klass: type  # Nifti1Image or Nifti2Image

    @property
    def spacing(self) -> tuple[float, float, float]:
        z = self.header.get_zooms()
        return (float(z[0]), float(z[1]), float(z[2]))


def _klass(raw: bytes) -> type:
    sizeof_hdr = int.from_bytes(raw[:4], "little")
    if sizeof_hdr not in (348, 540):
        sizeof_hdr = int.from_bytes(raw[:4], "big")
    return nib.Nifti2Image if sizeof_hdr == 540 else nib.Nifti1Image


def _image_from_bytes(raw: bytes) -> nib.Nifti1Image | nib.Nifti2Image:
    if len(raw) < 348:
        raise StudyError(f"file too short for a NIfTI header ({len(raw)} bytes)")
    try:
        return _klass(raw).from_bytes(raw)
    except Exception as exc:
        raise StudyError(f"not a valid NIfTI file ({exc})") from exc


def _spatial_shape(shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, int, int]:
    if dtype.fields is not None or dtype.kind not in "iuf":
        raise StudyError(f"voxel type {dtype} (e.g. RGB) is not a CT intensity volume")
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    elif len(shape) != 3:
        raise StudyError(f"expected a 3D volume (or 4D with a single volume), got shape {tuple(shape)}")
    if min(shape) < 1:
        raise StudyError(f"empty volume, shape {tuple(shape)}")
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def _open(path: Path) -> BinaryIO:
    """The file's NIfTI bytes as a stream: a .gz is decompressed as it is read, never as a whole."""
    return igzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")


def _read(path: Path, size: int, probe: bool = False) -> tuple[bytes, bool]:
    """The first ``size`` bytes of the file's NIfTI data (fewer when it ends sooner) and, with ``probe``,
    whether any data follows them. A .gz is decompressed only that far."""
    try:
        with _open(path) as fh:
            data = fh.read(size)
            return data, bool(probe and fh.read(1))
    except (EOFError, zlib.error, ValueError) as exc:
        raise StudyError(f"corrupt or truncated gzip data ({exc})") from exc
    except OSError as exc:
        if exc.errno is None:  # gzip format errors are OSErrors without errno
            raise StudyError(f"corrupt or truncated gzip data ({exc})") from exc
        raise StudyError(f"cannot read: {exc.strerror or exc}") from exc


def _header(path: Path) -> nib.Nifti1Header | nib.Nifti2Header:
    """The NIfTI header (a few hundred bytes, also of a .gz)."""
    head, _ = _read(path, 544)
    if len(head) < 348:
        raise StudyError(f"file too short for a NIfTI header ({len(head)} bytes)")
    try:
        return _klass(head).header_class.from_fileobj(io.BytesIO(head))
    except Exception as exc:
        raise StudyError(f"not a valid NIfTI file ({exc})") from exc


def _shape_and_dtype(hdr: nib.Nifti1Header | nib.Nifti2Header) -> tuple[tuple[int, int, int], np.dtype]:
    try:
        shape, dtype = tuple(int(s) for s in hdr.get_data_shape()), hdr.get_data_dtype()
    except Exception as exc:
        raise StudyError(f"not a valid NIfTI file ({exc})") from exc
    return _spatial_shape(shape, dtype), dtype


def read_header(path: Path) -> tuple[tuple[int, int, int], np.dtype]:
    """Spatial shape and voxel type from the header alone (a few hundred bytes, also of a .gz)."""
    return _shape_and_dtype(_header(path))


def _data_end(hdr: nib.Nifti1Header | nib.Nifti2Header, shape: tuple[int, int, int], dtype: np.dtype) -> int:
    """Where the voxels end, as the header says: its vox_offset plus the voxels' bytes."""
    return int(hdr.get_data_offset()) + math.prod(shape) * dtype.itemsize


def read_volume(path: Path, max_voxels: int | None = None, max_memory_mb: int = 0) -> Volume:
    """Read a NIfTI CT volume; raise StudyError with a one-line reason when it cannot be used.

    The header is checked first (shape, voxel type, and the size guards when ``max_voxels`` is given),
    so an oversized or malformed file is refused before its voxels are decompressed; then only the bytes
    the header describes are read, and a file holding more than those (a small header on a gzip bomb) is
    refused.
    """
    hdr = _header(path)
    shape, dtype = _shape_and_dtype(hdr)
    if max_voxels is not None:
        guards.check_voxels(shape, max(dtype.itemsize, 4 if dtype.kind == "f" else dtype.itemsize), max_voxels,
                            max_memory_mb, offset=int(hdr.get_data_offset()))
    end = _data_end(hdr, shape, dtype)
    raw, more = _read(path, end, probe=True)
    if more:
        raise StudyError(f"holds more data than its header describes ({'x'.join(map(str, shape))} {dtype} voxels"
                         f" end at byte {end:,}); refused as a damaged file or a decompression bomb")
    img = _image_from_bytes(raw)
    del raw
    shape = _spatial_shape(tuple(img.shape), img.get_data_dtype())
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise StudyError(f"truncated or unreadable voxel data ({exc})") from exc
    data = data.reshape(shape) if data.ndim != 3 else data
    affine = img.affine
    if affine is None or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise StudyError("the header has no usable affine (degenerate or missing sform/qform)")
    return Volume(data=data, affine=affine, header=img.header, klass=type(img))


def label_description(names: Sequence[str]) -> bytes:
    """The header's descrip for a label map of the model's classes, e.g. b"ODK segmentation: 0 background, 1
    liver, 2 lesion" (NIfTI keeps at most 80 bytes)."""
    return ("ODK segmentation: " + ", ".join(f"{i} {n}" for i, n in enumerate(names))).encode()[:80]


def label_image(labels: np.ndarray, ref: Volume, names: Sequence[str]) -> nib.Nifti1Image | nib.Nifti2Image:
    """A uint8 label map with the reference's affine, sform/qform (and their codes) and units; ``names`` are
    the model's labels (index = label value)."""
    hdr = ref.header.copy()
    img = ref.klass(labels.astype(np.uint8, copy=False), None, hdr)
    img.set_data_dtype(np.uint8)
    sform, sform_code = ref.header.get_sform(coded=True)
    qform, qform_code = ref.header.get_qform(coded=True)
    img.set_sform(sform if sform is not None else ref.affine, code=int(sform_code))
    img.set_qform(qform if qform is not None else ref.affine, code=int(qform_code))
    img.header.set_slope_inter(1.0, 0.0)
    img.header["cal_min"], img.header["cal_max"] = 0, max(1, int(labels.max()) if labels.size else 1)
    img.header.set_intent("label", (), name="segmentation")
    img.header["descrip"] = label_description(names)
    return img


def label_bytes(labels: np.ndarray, ref: Volume, names: Sequence[str], gz: bool = True) -> bytes:
    """The label map as .nii.gz (isal level 1) or .nii bytes."""
    raw = label_image(labels, ref, names).to_bytes()
    return igzip.compress(raw, compresslevel=1, mtime=0) if gz else raw
