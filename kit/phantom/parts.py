"""What a phantom is made of: parts painted in order, each an implicit shape with one HU value."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kit.phantom.sdf import Coords

Vec3 = tuple[float, float, float]
Sdf = Callable[[Coords], np.ndarray]

BACKGROUND, LIVER, LESION = 0, 1, 2
LABEL_NAMES = ("background", "liver", "lesion")


@dataclass(frozen=True)
class Part:
    """One tissue compartment. Later parts cover earlier ones (painter's order)."""

    name: str
    sdf: Sdf
    lo: Vec3  # patient-space bounding box (mm)
    hi: Vec3
    hu: float
    label: int = BACKGROUND


@dataclass(frozen=True)
class Tissues:
    """Hounsfield units of one phantom (one contrast phase)."""

    fat: float
    muscle: float
    liver: float
    spleen: float
    kidney: float
    aorta: float
    ivc: float
    bone: float
    marrow: float
    lung: float
    fluid: float

    @staticmethod
    def draw(rng: np.random.Generator) -> Tissues:
        phase = rng.uniform(0, 1)  # 0 = unenhanced, 1 = portal venous
        liver = 55 + 55 * phase + rng.normal(0, 5)
        return Tissues(
            fat=rng.uniform(-115, -85), muscle=rng.uniform(40, 60), liver=liver,
            spleen=liver + rng.uniform(-12, 12), kidney=liver + rng.uniform(-5, 35),
            aorta=40 + 140 * phase + rng.uniform(-10, 40), ivc=liver + rng.uniform(-15, 15),
            bone=rng.uniform(550, 900), marrow=rng.uniform(160, 280), lung=rng.uniform(-880, -800),
            fluid=rng.uniform(0, 20))


def bbox(center: Vec3, half: Vec3 | float) -> tuple[Vec3, Vec3]:
    h = (half, half, half) if isinstance(half, float | int) else half
    lo = (center[0] - h[0], center[1] - h[1], center[2] - h[2])
    hi = (center[0] + h[0], center[1] + h[1], center[2] + h[2])
    return lo, hi


def part(name: str, sdf: Sdf, box: tuple[Vec3, Vec3], hu: float, label: int = BACKGROUND) -> Part:
    return Part(name=name, sdf=sdf, lo=box[0], hi=box[1], hu=float(hu), label=label)
