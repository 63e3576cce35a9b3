"""Write phantoms as real NIfTI files in any axis orientation, with matching sform and qform."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations

from kit.phantom.render import Phantom
from odk import atomic_write_bytes

DTYPES = {"int16": np.int16, "float32": np.float32}


def reorient(arr: np.ndarray, affine: np.ndarray, axcodes: str) -> tuple[np.ndarray, np.ndarray]:
    """Store a canonical (RAS+) array along other axes, e.g. "LPS" or "SIR"; the world stays the same."""
    codes = tuple(axcodes.upper())
    if len(codes) != 3 or sorted(orientations.axcodes2ornt(codes)[:, 0].tolist()) != [0, 1, 2]:
        raise ValueError(f"orientation must be three axis codes like 'RAS' or 'LPS', got {axcodes!r}")
    current = orientations.io_orientation(affine)
    ornt = orientations.ornt_transform(current, orientations.axcodes2ornt(codes))
    out = orientations.apply_orientation(arr, ornt)
    return np.ascontiguousarray(out), affine @ orientations.inv_ornt_aff(ornt, arr.shape)


def nifti_path(path: str | Path, compress: bool | None) -> Path:
    """``path`` with a .nii or .nii.gz suffix; ``compress`` (when given) decides which."""
    p = Path(path)
    name = p.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            if compress is None:
                compress = suffix == ".nii.gz"
            break
    return p.with_name(name + (".nii.gz" if compress or compress is None else ".nii"))


def save(arr: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    img = nib.Nifti1Image(arr, affine)
    img.set_sform(affine, code="scanner")
    img.set_qform(affine, code="scanner")
    img.header.set_xyzt_units("mm", "sec")
    raw = img.to_bytes()
    if path.name.endswith(".gz"):
        # level 6 (nibabel's default 1 is ~15% larger); mtime 0 so the same phantom gives the same bytes
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=6, mtime=0) as fh:
            fh.write(raw)
        raw = buf.getvalue()
    atomic_write_bytes(path, raw)
    return path


def write(phantom: Phantom, path: str | Path, *, labels_path: str | Path | None = None,
          orientation: str = "RAS", dtype: str = "int16", compress: bool | None = None
          ) -> tuple[Path, Path | None]:
    """Write the CT (and, when ``labels_path`` is given, the uint8 labels) stored along ``orientation``.

    ``dtype`` is "int16" or "float32" (HU either way); ``compress`` forces .nii.gz (True) or .nii
    (False); by default the suffix of ``path`` decides (no suffix: .nii.gz). Returns the paths written.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    ct, affine = reorient(phantom.ct.astype(DTYPES[dtype]), phantom.affine, orientation)
    ct_path = save(ct, affine, nifti_path(path, compress))
    lab_path = None
    if labels_path is not None:
        labels, _ = reorient(phantom.labels, phantom.affine, orientation)
        lab_path = save(labels.astype(np.uint8), affine, nifti_path(labels_path, compress))
    return ct_path, lab_path
