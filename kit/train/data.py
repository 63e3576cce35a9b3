"""Training data: phantoms prepared exactly as the operator prepares a study for each model (numpy and
the operator library only, so that evaluation shares it without torch), cached on disk, and random crops biased
towards the liver and the lesions.

Preprocessing contracts (config.pbtxt ``parameters``):
- ``spacing_mm`` (liver models): canonical RAS+, linear resampling to that spacing; 0 keeps an axis as is;
- ``resize_shape`` (classifier): canonical RAS+, linear resampling of the whole extent onto that many voxels;
- then ``hu_window`` lo,hi -> 0..1, clipped.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import odk
from kit import phantom
from kit.phantom import make_phantom
from kit.phantom.render import Phantom
from odk import (
    Geometry,
    canonical_ornt,
    canonical_spacing,
    forward,
    hu_window,
    labels_to_model,
    resample_linear,
    to_canonical,
    voxel_spacing,
)


@dataclass(frozen=True)
class Case:
    image: np.ndarray  # float32 (X, Y, Z) in 0..1 on the model grid
    labels: np.ndarray  # uint8 (X, Y, Z)
    liver_idx: np.ndarray  # flat indices of liver voxels
    lesion_idx: np.ndarray  # flat indices of lesion voxels


def phantom_grid(seed: int) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Scanner grids for training and held-out evaluation: the generator's ranges, capped in size (CPU time)."""
    rng = np.random.default_rng([seed, 7])
    sp = rng.uniform(0.7, 1.0)
    sz = float(rng.choice([1.5, 2.0, 2.5, 3.0, 4.0, 5.0]))
    n = int(np.clip(round(rng.uniform(300, 460) / sp), 256, 512))
    nz = int(np.clip(round(rng.uniform(140, 260) / sz), 32, 160))
    return (n, n, nz), (sp, sp, sz)


def training_grid(seed: int, coarsen: int = 1) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """phantom_grid(seed), ``coarsen`` times coarser in-plane over the same field of view (CPU time, for
    models whose own grid is much coarser than the scanner's)."""
    (nx, ny, nz), (sx, sy, sz) = phantom_grid(seed)
    if coarsen == 1:
        return (nx, ny, nz), (sx, sy, sz)
    mx, my = math.ceil(nx / coarsen), math.ceil(ny / coarsen)
    return (mx, my, nz), (sx * nx / mx, sy * ny / my, sz)


def resolve_spacing(spacing: tuple[float, float, float], affine: np.ndarray) -> tuple[float, float, float]:
    """A model spacing with 0 for "keep this axis": the volume's own canonical spacing there."""
    own = canonical_spacing(voxel_spacing(affine), canonical_ornt(affine))
    out = [s if s > 0 else o for s, o in zip(spacing, own, strict=True)]
    return (out[0], out[1], out[2])


def prepare_spacing(arr: np.ndarray, affine: np.ndarray, spacing: tuple[float, float, float],
                    window: tuple[float, float]) -> tuple[np.ndarray, Geometry]:
    """The ``spacing_mm`` contract (0 keeps an axis): odk.forward."""
    return forward(arr, affine, resolve_spacing(spacing, affine), window)


def prepare_resized(arr: np.ndarray, affine: np.ndarray, shape: tuple[int, int, int],
                    window: tuple[float, float]) -> np.ndarray:
    """The ``resize_shape`` contract: canonical RAS+, the whole extent linearly onto ``shape`` voxels (voxel
    size extent/shape per axis, odk's extent-preserving mapping), HU window -> 0..1."""
    canon = to_canonical(arr, canonical_ornt(affine))
    return hu_window(resample_linear(canon, shape), *window)


def prepare(p: Phantom, spacing: tuple[float, float, float], window: tuple[float, float]
            ) -> tuple[np.ndarray, np.ndarray]:
    """A phantom on the model grid: the operator's own pre-transform, and the matching labels."""
    image, geom = prepare_spacing(p.ct, p.affine, spacing, window)
    return image, labels_to_model(p.labels, geom)


def _code_version() -> str:
    """Hash of the code that makes a case (generator + pre-transform): a changed generator means new data."""
    transforms = Path(sys.modules[odk.forward.__module__].__file__ or "")
    files = [*sorted(Path(phantom.__file__).parent.glob("*.py")), transforms]
    return hashlib.sha1(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]


def cached(cache_dir: Path, stem: str, parts: list, make: Callable[[], dict[str, np.ndarray]]
           ) -> dict[str, np.ndarray]:
    """Arrays made once per ``parts`` (and code version) and kept in ``cache_dir``; float arrays are kept as
    float16 and come back as float32, the same whether cached or not."""
    key = hashlib.sha1(json.dumps([*parts, _code_version()]).encode()).hexdigest()[:12]
    path = cache_dir / f"{stem}-{key}.npz"
    if path.exists():
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    else:
        arrays = {k: v.astype(np.float16) if v.dtype.kind == "f" else v for k, v in make().items()}
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in arrays.items()}


def load_case(seed: int, spacing: tuple[float, float, float], window: tuple[float, float],
              cache_dir: Path, coarsen: int = 1) -> Case:
    """A training phantom prepared for a segmentation model (``spacing``: the ``spacing_mm`` contract)."""
    grid = training_grid(seed, coarsen)

    def make() -> dict[str, np.ndarray]:
        image, labels = prepare(make_phantom(seed, *grid), spacing, window)
        return {"image": image, "labels": labels}

    z = cached(cache_dir, f"phantom-{seed}", [seed, spacing, window, grid], make)
    flat = z["labels"].ravel()
    return Case(image=z["image"], labels=z["labels"], liver_idx=np.flatnonzero(flat == 1),
                lesion_idx=np.flatnonzero(flat == 2))


@dataclass(frozen=True)
class StudyCase:
    """A phantom prepared for the study-level classifier."""

    seed: int
    image: np.ndarray  # float32 resize_shape in 0..1
    lesion_voxels: int  # in the phantom's truth, on its own grid
    lesion_map: np.ndarray  # uint8, resize_shape / LESION_MAP_FACTOR: 1 where a cell holds a lesion voxel

    @property
    def label(self) -> int:
        return int(self.lesion_voxels > 0)


LESION_MAP_FACTOR = 4  # training target of the classifier's auxiliary lesion map: 64^3 -> 16^3 cells


def lesion_cells(labels: np.ndarray, affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 ``shape`` map, canonical RAS+, over the volume's whole extent: 1 where a cell holds a lesion
    voxel (any, however small: a maximum, not an interpolation)."""
    canon = to_canonical(labels, canonical_ornt(affine))
    out = np.zeros(shape, np.uint8)
    where = np.nonzero(canon == phantom.LESION)
    cells = [np.minimum((w * n) // m, n - 1) for w, n, m in zip(where, shape, canon.shape, strict=True)]
    out[tuple(cells)] = 1
    return out


def lesions_for(seed: int) -> int | None:
    """Classifier phantoms: even seeds lesion-free, odd seeds with the generator's random 0-4 lesions."""
    return 0 if seed % 2 == 0 else None


def load_study_case(seed: int, shape: tuple[int, int, int], window: tuple[float, float], cache_dir: Path,
                    coarsen: int = 1) -> StudyCase:
    grid, lesions = training_grid(seed, coarsen), lesions_for(seed)

    def make() -> dict[str, np.ndarray]:
        p = make_phantom(seed, *grid, lesions=lesions)
        cells = (shape[0] // LESION_MAP_FACTOR, shape[1] // LESION_MAP_FACTOR, shape[2] // LESION_MAP_FACTOR)
        return {"image": prepare_resized(p.ct, p.affine, shape, window),
                "lesion_voxels": np.array(np.count_nonzero(p.labels == phantom.LESION)),
                "lesion_map": lesion_cells(p.labels, p.affine, cells)}

    z = cached(cache_dir, f"study-{seed}", [seed, shape, window, grid, lesions, LESION_MAP_FACTOR], make)
    return StudyCase(seed=seed, image=z["image"], lesion_voxels=int(z["lesion_voxels"]),
                     lesion_map=z["lesion_map"])


def _pad_to(a: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    pad = [(0, max(0, n - s)) for s, n in zip(a.shape, size, strict=True)]
    return np.pad(a, pad) if any(p[1] for p in pad) else a


def random_crop(case: Case, size: int | tuple[int, int, int], rng: np.random.Generator, lesion_frac: float,
                liver_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """One (1, *size) image crop and its (*size) labels; ``size`` an edge length or one per axis (e.g.
    (128, 128, 1): an axial slice)."""
    sizes = (size,) * 3 if isinstance(size, int) else tuple(size)
    image, labels = _pad_to(case.image, sizes), _pad_to(case.labels, sizes)
    u = rng.uniform()
    centre = None
    if u < lesion_frac and case.lesion_idx.size:
        centre = np.unravel_index(rng.choice(case.lesion_idx), case.labels.shape)
    elif u < lesion_frac + liver_frac and case.liver_idx.size:
        centre = np.unravel_index(rng.choice(case.liver_idx), case.labels.shape)
    starts = []
    for axis, n in enumerate(sizes):
        hi = image.shape[axis] - n
        if centre is None:
            starts.append(int(rng.integers(0, hi + 1)))
        else:
            jitter = int(rng.integers(-n // 3, n // 3 + 1))
            starts.append(int(np.clip(int(centre[axis]) - n // 2 + jitter, 0, hi)))
    sl = tuple(slice(s, s + n) for s, n in zip(starts, sizes, strict=True))
    return image[sl][None], labels[sl]
