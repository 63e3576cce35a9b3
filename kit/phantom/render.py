"""Render a phantom: draw the anatomy from a seed, paint it on the working grid, interpolate onto the
scanner grid (partial volume), add noise, and derive the labels from the same painted fractions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.transforms import resample_linear, voxel_spacing
from kit.phantom import body, organs
from kit.phantom.grid import Grid, Shape3, Vec3
from kit.phantom.parts import LESION, LIVER, Part, Tissues

EDGE_MM = 1.0  # width of the partial-volume ramp across a surface, before interpolation
HU_MIN, HU_MAX = -1024, 3071


@dataclass
class Phantom:
    """A CT volume in HU and its labels (0 background, 1 liver, 2 lesion), stored RAS+ (canonical)."""

    ct: np.ndarray  # int16 HU
    labels: np.ndarray  # uint8
    affine: np.ndarray  # 4x4 voxel -> world (RAS+ mm)
    seed: int
    info: dict = field(default_factory=dict)

    @property
    def spacing(self) -> Vec3:
        return voxel_spacing(self.affine)


def random_grid(rng: np.random.Generator) -> tuple[Shape3, Vec3]:
    """A scanner-like grid: in-plane 0.6-1.0 mm, slices 1-5 mm, 256-512 pixels, 32+ slices."""
    sp = rng.uniform(0.6, 1.0)
    sz = float(rng.choice([1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0]))
    n = int(np.clip(round(rng.uniform(300, 440) / sp / 16) * 16, 256, 512))
    nz = int(np.clip(round(rng.uniform(140, 260) / sz), 32, 260))
    return (n, n, nz), (sp, sp, sz)


def anatomy(rng: np.random.Generator, lesions: int | None = None) -> tuple[list[Part], Tissues]:
    """All parts in painting order, and the phantom's tissue HU values (``lesions``: see make_phantom)."""
    t = Tissues.draw(rng)
    f = body.make_frame(rng)
    liver, liver_box = organs.liver_shape(f, rng)
    spine = body.spine_parts(f, t, rng)  # muscles first (under the gut), bones later
    parts = body.wall_parts(f, t, rng) + spine[:2] + organs.gut_parts(f, t, rng)
    parts.append(organs.liver_part(liver, liver_box, t))
    parts += organs.lesion_parts(liver, liver_box, t, rng, lesions)
    parts += organs.neighbour_parts(f, t, liver_box, rng)
    parts += spine[2:] + body.chest_parts(f, t, rng) + body.rib_parts(f, t, rng)
    return parts, t


def paint(grid: Grid, parts: list[Part], air: float = -1000.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Painter's algorithm on the working grid: HU, liver fraction, lesion fraction."""
    hu = np.full(grid.coarse_shape, air, np.float32)
    liver = np.zeros(grid.coarse_shape, np.float32)
    lesion = np.zeros(grid.coarse_shape, np.float32)
    for p in parts:
        block = grid.block(p.lo, p.hi)
        if block is None:
            continue
        d = p.sdf(grid.coords(block))
        alpha = np.clip(np.float32(0.5) - d * np.float32(1.0 / EDGE_MM), 0, 1)
        shape = tuple(s.stop - s.start for s in block)
        alpha = np.broadcast_to(alpha, shape)
        if not alpha.any():
            continue
        h = hu[block]
        h += alpha * (np.float32(p.hu) - h)
        keep = 1 - alpha
        for frac, label in ((liver, LIVER), (lesion, LESION)):
            fb = frac[block]
            fb *= keep
            if p.label == label:
                fb += alpha
    return hu, liver, lesion


def make_phantom(seed: int, shape: Shape3 | None = None, spacing: Vec3 | None = None,
                 noise: float | None = None, lesions: int | None = None) -> Phantom:
    """A random abdominal CT phantom; the same seed (and arguments) always gives the same volume.

    ``shape``/``spacing`` default to a random scanner-like grid; ``noise`` (HU standard deviation)
    defaults to a random 6-20 HU; ``lesions`` fixes the number of liver lesions (default: random 0-4;
    0 gives a lesion-free liver, e.g. the negative cases of a classifier).
    """
    rng = np.random.default_rng(seed)
    rand_shape, rand_spacing = random_grid(rng)
    shape = tuple(int(n) for n in (shape or rand_shape))  # type: ignore[assignment]
    spacing = tuple(float(s) for s in (spacing or rand_spacing))  # type: ignore[assignment]
    sigma = float(noise if noise is not None else rng.uniform(6, 20))
    shift = (rng.uniform(-20, 20), rng.uniform(-30, 10), rng.uniform(-40, 40))
    yaw = np.radians(rng.uniform(-10, 10))
    grid = Grid(shape=shape, spacing=spacing, shift=shift, yaw=yaw)  # type: ignore[arg-type]
    parts, tissues = anatomy(rng, lesions)

    hu_c, liver_c, lesion_c = paint(grid, parts)
    liver_c += lesion_c  # fraction of the liver, lesions included
    labels = np.zeros(shape, np.uint8)
    labels[resample_linear(liver_c, shape) > 0.5] = LIVER
    labels[resample_linear(lesion_c, shape) > 0.5] = LESION
    del liver_c, lesion_c

    ct = resample_linear(hu_c, shape)
    del hu_c
    noise_rng = np.random.default_rng([seed, 1])
    ct += noise_rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)
    # outside the reconstruction circle the scanner writes its padding value
    r = min(shape[0] * spacing[0], shape[1] * spacing[1]) / 2
    x = (np.arange(shape[0]) - (shape[0] - 1) / 2) * spacing[0]
    y = (np.arange(shape[1]) - (shape[1] - 1) / 2) * spacing[1]
    ct[(x[:, None] ** 2 + y[None, :] ** 2) > r * r] = HU_MIN
    ct = np.clip(np.rint(ct), HU_MIN, HU_MAX).astype(np.int16)

    info = {"seed": seed, "shape": shape, "spacing": spacing, "noise_hu": sigma,
            "lesions": sum(p.label == LESION for p in parts), "liver_hu": tissues.liver,
            "yaw_deg": float(np.degrees(yaw)), "shift_mm": shift}
    return Phantom(ct=ct, labels=labels, affine=grid.affine, seed=seed, info=info)
