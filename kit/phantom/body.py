"""Body wall, skeleton and chest: outline with fat and muscle layers, spine, ribs, lung bases, heart."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kit.phantom import sdf as S
from kit.phantom.parts import Part, Sdf, Tissues, bbox, part
from kit.phantom.sdf import Coords

BIG = 2000.0  # mm: "the whole scan" along z


@dataclass(frozen=True)
class Frame:
    """Body size and the landmarks that the organs are placed against (patient mm)."""

    a: float  # half width (left-right)
    b: float  # half depth (anterior-posterior)
    t_fat: float
    t_muscle: float
    spine_y: float  # centre of the vertebral bodies
    dome_r: float  # top of the right hemidiaphragm
    dome_l: float
    outline: Sdf  # the skin
    cavity: Sdf  # inside the abdominal wall muscles

    def diaphragm(self, c: Coords) -> np.ndarray:
        """Height of the diaphragm above (x, y): two paraboloid domes."""
        nx = (c.x - np.float32(0.45 * self.a)) / np.float32(0.55 * self.a)
        ny = (c.y + np.float32(0.05 * self.b)) / np.float32(0.85 * self.b)
        right = np.float32(self.dome_r) - np.float32(70) * (nx * nx + ny * ny)
        nx = (c.x + np.float32(0.45 * self.a)) / np.float32(0.55 * self.a)
        left = np.float32(self.dome_l) - np.float32(70) * (nx * nx + ny * ny)
        return np.maximum(right, left)


def make_frame(rng: np.random.Generator) -> Frame:
    a, b = rng.uniform(135, 185), rng.uniform(100, 135)
    bumps = S.waves(rng, amplitude=5.0, wavelength=(80, 250))
    t_fat, t_fat_ant = rng.uniform(6, 24), rng.uniform(0, 14)
    t_muscle = rng.uniform(7, 14)

    def outline(c: Coords) -> np.ndarray:
        return S.ellipse(c, (0.0, 0.0), (a, b)) + bumps(c)

    def cavity(c: Coords) -> np.ndarray:
        fat = np.float32(t_fat) + np.float32(t_fat_ant) * np.clip(c.y / np.float32(b), 0, 1)
        return outline(c) + fat + np.float32(t_muscle)

    dome_r = rng.uniform(60, 100)
    return Frame(a=a, b=b, t_fat=t_fat, t_muscle=t_muscle, spine_y=-b + rng.uniform(75, 90),
                 dome_r=dome_r, dome_l=dome_r - rng.uniform(5, 25), outline=outline, cavity=cavity)


def wall_parts(f: Frame, t: Tissues, rng: np.random.Generator) -> list[Part]:
    whole = bbox((0.0, 0.0, 0.0), (f.a + 15, f.b + 15, BIG))
    table_y = -f.b - rng.uniform(5, 25)
    fat_layer = f.t_fat

    def muscle(c: Coords) -> np.ndarray:
        return f.outline(c) + np.float32(fat_layer)

    return [
        part("table", lambda c: S.box(c, (0.0, table_y - 8, 0.0), (230.0, 5.0, BIG)),
             bbox((0.0, table_y - 8, 0.0), (230.0, 6.0, BIG)), rng.uniform(-150, 50)),
        part("subcutaneous fat", f.outline, whole, t.fat),
        part("abdominal wall", muscle, whole, t.muscle),
        part("visceral fat", f.cavity, whole, t.fat + rng.uniform(0, 25)),
    ]


def spine_parts(f: Frame, t: Tissues, rng: np.random.Generator) -> list[Part]:
    y = f.spine_y
    phase = rng.uniform(0, 32)
    column = bbox((0.0, y - 20, 0.0), (70.0, 60.0, BIG))
    vb = (rng.uniform(19, 24), rng.uniform(15, 19))

    def seg(d: np.ndarray, c: Coords, solid: float = 26.0) -> np.ndarray:
        return np.maximum(d, S.periodic_z(c, 32.0, solid, phase))

    def arch(c: Coords) -> np.ndarray:
        ring = S.ellipse(c, (0.0, y - vb[1] - 11), (15.0, 13.0))
        spinous = S.box(c, (0.0, y - vb[1] - 36, 0.0), (4.0, 14.0, BIG))
        transverse = S.box(c, (0.0, y - vb[1] - 8, 0.0), (38.0, 5.0, BIG))
        return seg(S.union(ring, spinous, transverse), c, 14.0)

    paraspinal = rng.uniform(20, 27)

    def back_muscles(c: Coords) -> np.ndarray:
        d = S.union(S.ellipse(c, (paraspinal + 6, y - vb[1] - 26), (paraspinal, 20.0)),
                    S.ellipse(c, (-paraspinal - 6, y - vb[1] - 26), (paraspinal, 20.0)))
        return np.maximum(d, f.outline(c) + np.float32(f.t_fat))

    return [
        part("paraspinal muscles", back_muscles, column, t.muscle),
        part("psoas", lambda c: np.maximum(S.union(
            S.ellipse(c, (35.0, y + 2), (17.0, 14.0)), S.ellipse(c, (-35.0, y + 2), (17.0, 14.0))),
            c.z - np.float32(f.dome_r - 150)), column, t.muscle),
        part("discs", lambda c: S.ellipse(c, (0.0, y), vb), column, 80.0),
        part("vertebral bodies", lambda c: seg(S.ellipse(c, (0.0, y), vb), c), column, t.bone),
        part("marrow", lambda c: seg(S.ellipse(c, (0.0, y), (vb[0] - 2.5, vb[1] - 2.5)), c, 21.0),
             column, t.marrow),
        part("vertebral arches", arch, column, t.bone),
        part("spinal canal", lambda c: S.ellipse(c, (0.0, y - vb[1] - 10), (9.0, 8.0)), column, 15.0),
    ]


def rib_parts(f: Frame, t: Tissues, rng: np.random.Generator) -> list[Part]:
    out = []
    ra, rb = f.a - f.t_fat - 6, f.b - f.t_fat - 6
    gap, slope, r = rng.uniform(24, 30), rng.uniform(0.25, 0.4), rng.uniform(4, 6)
    top = f.dome_r + rng.uniform(20, 50)
    for k in range(9):
        z0 = top - k * gap
        y_cut = f.b * (0.65 - 0.12 * k)

        def rib(c: Coords, z0: float = z0, y_cut: float = y_cut) -> np.ndarray:
            ring = np.abs(S.ellipse(c, (0.0, 0.0), (ra, rb)))
            dz = c.z - np.float32(z0) + np.float32(slope) * (c.y - np.float32(f.spine_y))
            d = np.sqrt(ring * ring + dz * dz) - np.float32(r)
            return np.maximum(np.maximum(d, c.y - np.float32(y_cut)), np.float32(22) - np.abs(c.x))

        z_lo, z_hi = z0 - slope * (f.b - f.spine_y) - r, z0 + slope * (f.b + f.spine_y) + r
        box = ((-f.a, -f.b, z_lo - 5), (f.a, y_cut + r, z_hi + 5))
        out.append(part(f"rib {k + 5}", rib, box, t.bone * 0.8))
    return out


def chest_parts(f: Frame, t: Tissues, rng: np.random.Generator) -> list[Part]:
    top = max(f.dome_r, f.dome_l) + 300
    lungs_box = ((-f.a, -f.b, min(f.dome_r, f.dome_l) - 140), (f.a, f.b, top))

    def lungs(c: Coords) -> np.ndarray:
        right = S.ellipse(c, (0.42 * f.a, -0.05 * f.b), (0.5 * f.a, 0.8 * f.b))
        left = S.ellipse(c, (-0.42 * f.a, -0.05 * f.b), (0.5 * f.a, 0.8 * f.b))
        inside = np.maximum(S.union(right, left), f.cavity(c) + np.float32(2))
        return np.maximum(inside, f.diaphragm(c) - c.z)

    heart_c = (-0.12 * f.a, 0.2 * f.b, f.dome_l + rng.uniform(50, 70))

    def heart(c: Coords) -> np.ndarray:
        d = S.ellipsoid(c, heart_c, (0.4 * f.a, 0.42 * f.b, 75.0), S.rotation(yaw=0.4))
        return np.maximum(d, f.diaphragm(c) - c.z + np.float32(3))

    return [part("diaphragm", lambda c: lungs(c) - np.float32(4), lungs_box, t.muscle),
            part("lung bases", lungs, lungs_box, t.lung),
            part("heart", heart, ((-f.a, -f.b, f.dome_l - 80), (f.a, f.b, top)), 40 + 0.5 * (t.aorta - 40))]
