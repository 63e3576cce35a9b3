"""Training data: phantoms prepared exactly as the operator prepares a study (odk.forward),
cached on disk, and random crops biased towards the liver and the lesions."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import odk
from kit import phantom
from kit.phantom import make_phantom
from kit.phantom.render import Phantom
from odk import forward, labels_to_model


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


def prepare(p: Phantom, spacing: tuple[float, float, float], window: tuple[float, float]
            ) -> tuple[np.ndarray, np.ndarray]:
    """A phantom on the model grid: the operator's own pre-transform, and the matching labels."""
    image, geom = forward(p.ct, p.affine, spacing, window)
    return image, labels_to_model(p.labels, geom)


def _code_version() -> str:
    """Hash of the code that makes a case (generator + pre-transform): a changed generator means new data."""
    transforms = Path(sys.modules[odk.forward.__module__].__file__ or "")
    files = [*sorted(Path(phantom.__file__).parent.glob("*.py")), transforms]
    return hashlib.sha1(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]


def load_case(seed: int, spacing: tuple[float, float, float], window: tuple[float, float],
              cache_dir: Path) -> Case:
    parts = [seed, spacing, window, phantom_grid(seed), _code_version()]
    key = hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:12]
    path = cache_dir / f"phantom-{seed}-{key}.npz"
    if path.exists():
        with np.load(path) as z:
            image, labels = z["image"].astype(np.float32), z["labels"]
    else:
        shape, sp = phantom_grid(seed)
        image, labels = prepare(make_phantom(seed, shape, sp), spacing, window)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, image=image.astype(np.float16), labels=labels)
        tmp.replace(path)
        image = image.astype(np.float16).astype(np.float32)  # identical whether cached or not
    flat = labels.ravel()
    return Case(image=image, labels=labels, liver_idx=np.flatnonzero(flat == 1),
                lesion_idx=np.flatnonzero(flat == 2))


def _pad_to(a: np.ndarray, size: int) -> np.ndarray:
    pad = [(0, max(0, size - s)) for s in a.shape]
    return np.pad(a, pad) if any(p[1] for p in pad) else a


def random_crop(case: Case, size: int, rng: np.random.Generator, lesion_frac: float,
                liver_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """One (1, size, size, size) image crop and its (size, size, size) labels."""
    image, labels = _pad_to(case.image, size), _pad_to(case.labels, size)
    u = rng.uniform()
    centre = None
    if u < lesion_frac and case.lesion_idx.size:
        centre = np.unravel_index(rng.choice(case.lesion_idx), case.labels.shape)
    elif u < lesion_frac + liver_frac and case.liver_idx.size:
        centre = np.unravel_index(rng.choice(case.liver_idx), case.labels.shape)
    starts = []
    for axis in range(3):
        hi = image.shape[axis] - size
        if centre is None:
            starts.append(int(rng.integers(0, hi + 1)))
        else:
            jitter = int(rng.integers(-size // 3, size // 3 + 1))
            starts.append(int(np.clip(int(centre[axis]) - size // 2 + jitter, 0, hi)))
    sl = tuple(slice(s, s + size) for s in starts)
    return image[sl][None], labels[sl]
