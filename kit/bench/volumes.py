"""The bench's input studies: kit.phantom CT phantoms, generated once into a cache keyed by seed and grid.

Each study lies alone in its own folder, so that folder can be the operator's whole input payload.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

Shape3 = tuple[int, int, int]
Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class Size:
    name: str
    shape: Shape3
    spacing: Vec3

    @property
    def float32_mb(self) -> float:
        """Size of the volume as float32, the yardstick of the memory target."""
        return float(np.prod(self.shape)) * 4 / 2**20


SIZES: dict[str, Size] = {
    # A typical abdominal CT series: 512 x 512 in-plane at ~0.8 mm, 200 slices of 2.5 mm.
    "ct": Size("ct", (512, 512, 200), (0.8, 0.8, 2.5)),
    # A quarter-size series (the same body on a coarser in-plane grid).
    "small": Size("small", (256, 256, 100), (1.5, 1.5, 2.5)),
    # Tiny (one window on the model grid): for the harness's own test only.
    "tiny": Size("tiny", (48, 48, 32), (2.5, 2.5, 3.0)),
}


def cache_key(size: Size, seed: int) -> str:
    shape = "x".join(map(str, size.shape))
    spacing = "x".join(f"{s:g}" for s in size.spacing)
    return f"phantom-s{seed}-{shape}-{spacing}"


def phantom_study(cache: Path, size: Size, seed: int = 1) -> Path:
    """Path of the cached ``.nii.gz`` phantom for (size, seed); generated on first use."""
    folder = cache / cache_key(size, seed)
    path = folder / f"{size.name}.nii.gz"
    if path.is_file():
        return path
    from kit.phantom.render import make_phantom

    ph = make_phantom(seed, size.shape, size.spacing)
    img = nib.Nifti1Image(ph.ct, ph.affine)
    img.set_sform(ph.affine, code=1)
    img.set_qform(ph.affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    # Name the temp file .nii.gz so nibabel gzips it; the rename makes it appear whole.
    tmp_gz = tmp.with_name(tmp.name + ".nii.gz")
    try:
        nib.save(img, tmp_gz)
        os.replace(tmp_gz, path)
    finally:
        tmp_gz.unlink(missing_ok=True)
    return path
