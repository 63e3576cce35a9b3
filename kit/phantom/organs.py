"""Abdominal organs: a lobed liver on the patient's right with 0-4 lesions, and the organs of liver-like
density around it (spleen, kidneys, vessels) plus stomach, gallbladder and gas-filled bowel."""

from __future__ import annotations

import numpy as np

from kit.phantom import sdf as S
from kit.phantom.body import Frame
from kit.phantom.parts import LESION, LIVER, Part, Sdf, Tissues, Vec3, bbox, part
from kit.phantom.sdf import Coords


def _rot(rng: np.random.Generator, deg: float) -> np.ndarray:
    return S.rotation(*np.radians(rng.uniform(-deg, deg, size=3)))


def _extent(center: Vec3, radii: Vec3, pad: float = 10.0) -> tuple[Vec3, Vec3]:
    r = max(radii) + pad  # rotation-safe
    return bbox(center, r)


def _merge(boxes: list[tuple[Vec3, Vec3]]) -> tuple[Vec3, Vec3]:
    lo = tuple(min(b[0][i] for b in boxes) for i in range(3))
    hi = tuple(max(b[1][i] for b in boxes) for i in range(3))
    return (lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2])


def liver_shape(f: Frame, rng: np.random.Generator) -> tuple[Sdf, tuple[Vec3, Vec3]]:
    """Right lobe, left lobe across the midline, caudate lobe, sometimes an inferior (Riedel) tip."""
    s = rng.uniform(0.85, 1.15)
    rz = rng.uniform(70, 95) * s
    zc = f.dome_r - 0.7 * rz
    lobes: list[tuple[Vec3, Vec3, np.ndarray]] = [
        ((0.45 * f.a, 0.05 * f.b, zc), (0.5 * f.a * s, 0.72 * f.b * s, rz), _rot(rng, 10)),
        ((-0.08 * f.a, 0.38 * f.b, zc + rng.uniform(5, 30)),
         (rng.uniform(0.3, 0.5) * f.a, 0.32 * f.b * s, rng.uniform(30, 50)), _rot(rng, 15)),
        ((0.06 * f.a, -0.22 * f.b, zc + 5), (25 * s, 25 * s, 35 * s), _rot(rng, 15)),
    ]
    if rng.uniform() < 0.35:
        lobes.append(((0.62 * f.a, 0.08 * f.b, zc - 0.8 * rz), (30 * s, 40 * s, 50 * s), _rot(rng, 10)))
    bumps = S.waves(rng, amplitude=rng.uniform(3, 8), wavelength=(50, 160))
    fillet = rng.uniform(15, 30)

    def liver(c: Coords) -> np.ndarray:
        d = S.ellipsoid(c, *lobes[0])
        for lobe in lobes[1:]:
            d = S.smooth_union(d, S.ellipsoid(c, *lobe), fillet)
        d = d + bumps(c)
        d = np.maximum(d, f.cavity(c) + np.float32(1.5))
        return np.maximum(d, c.z - f.diaphragm(c) + np.float32(2.5))

    return liver, _merge([_extent(c, r, 12) for c, r, _ in lobes])


def lesion_parts(liver: Sdf, box: tuple[Vec3, Vec3], t: Tissues, rng: np.random.Generator,
                 count: int | None = None) -> list[Part]:
    """0-4 lesions (or ``count``; fewer when the liver has no room), hypo- or hyperdense, each entirely
    inside the liver. The random count is drawn either way, so a given count leaves the rest of the
    anatomy before the lesions as it was."""
    n = int(rng.choice(5, p=[0.1, 0.3, 0.25, 0.2, 0.15]))
    if count is not None:
        n = count
    m = 4000
    pts = rng.uniform(box[0], box[1], size=(m, 3)).astype(np.float32)
    depth = -liver(Coords(pts[:, 0], pts[:, 1], pts[:, 2]))
    out = []
    for i in range(n):
        r = rng.uniform(6, 22)
        ok = np.flatnonzero(depth > r + 3)
        if ok.size == 0:
            break
        center = tuple(float(v) for v in pts[rng.choice(ok)])
        radii = (r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.2))
        rot, bumps = _rot(rng, 90), S.waves(rng, amplitude=0.12 * r, wavelength=(3 * r, 6 * r), n=3)
        contrast = -rng.uniform(25, 65) if rng.uniform() < 0.65 else rng.uniform(25, 55)

        def lesion(c: Coords, center: Vec3 = center, radii: Vec3 = radii, rot: np.ndarray = rot,
                   bumps: Sdf = bumps) -> np.ndarray:
            return np.maximum(S.ellipsoid(c, center, radii, rot) + bumps(c), liver(c))

        out.append(part(f"lesion {i + 1}", lesion, _extent(center, radii, 0.2 * r + 4),
                        t.liver + contrast, LESION))
    return out


def _blob(name: str, center: Vec3, radii: Vec3, rot: np.ndarray, hu: float,
          clip: Sdf | None = None) -> Part:
    def shape(c: Coords) -> np.ndarray:
        d = S.ellipsoid(c, center, radii, rot)
        return d if clip is None else np.maximum(d, clip(c))

    return part(name, shape, _extent(center, radii), hu)


def _hollow(name: str, center: Vec3, radii: Vec3, rot: np.ndarray, t: Tissues, rng: np.random.Generator,
            wall: float, clip: Sdf) -> list[Part]:
    """A loop of bowel or the stomach: soft-tissue wall, fluid content, gas rising anteriorly."""
    lumen = tuple(max(r - wall, 2.0) for r in radii)
    out = [_blob(f"{name} wall", center, radii, rot, t.muscle - rng.uniform(0, 15), clip),
           _blob(f"{name} content", center, lumen, rot, rng.uniform(-20, 30), clip)]
    if rng.uniform() < 0.6:
        level = center[1] + rng.uniform(-0.6, 0.6) * radii[1]

        def gas(c: Coords) -> np.ndarray:
            return np.maximum(S.ellipsoid(c, center, lumen, rot), np.float32(level) - c.y)

        out.append(part(f"{name} gas", gas, _extent(center, radii), rng.uniform(-990, -900)))
    return out


def gut_parts(f: Frame, t: Tissues, rng: np.random.Generator) -> list[Part]:
    """Bowel loops in the lower abdomen and the stomach under the left dome (painted before the liver)."""
    out: list[Part] = []
    low = f.dome_r - 290
    colon = [((0.6 * f.a, -0.05 * f.b, low + 90), (22.0, 22.0, 90.0)),  # ascending
             ((-0.62 * f.a, -0.1 * f.b, low + 110), (20.0, 20.0, 100.0)),  # descending
             ((0.0, 0.45 * f.b, f.dome_r - rng.uniform(130, 170)), (0.55 * f.a, 20.0, 18.0))]  # transverse
    for i, (center, radii) in enumerate(colon):
        out += _hollow(f"colon {i + 1}", center, radii, _rot(rng, 8), t, rng, 2.5, f.cavity)
    for i in range(int(rng.integers(10, 21))):
        center = (rng.uniform(-0.55, 0.5) * f.a, rng.uniform(-0.2, 0.6) * f.b,
                  f.dome_r - rng.uniform(100, 290))
        radii = (rng.uniform(10, 22), rng.uniform(10, 22), rng.uniform(15, 40))
        out += _hollow(f"bowel {i + 1}", center, radii, _rot(rng, 60), t, rng, rng.uniform(2, 4), f.cavity)
    stomach_c = (-0.4 * f.a, 0.15 * f.b, f.dome_l - rng.uniform(30, 50))
    out += _hollow("stomach", stomach_c, (rng.uniform(35, 50), rng.uniform(28, 38), rng.uniform(35, 50)),
                   _rot(rng, 25), t, rng, 4.0, f.cavity)
    return out


def neighbour_parts(f: Frame, t: Tissues, liver_box: tuple[Vec3, Vec3],
                    rng: np.random.Generator) -> list[Part]:
    """Organs painted over the liver: gallbladder, IVC, kidneys, spleen, aorta."""
    out: list[Part] = []
    y = f.spine_y
    if rng.uniform() < 0.7:
        z0, z1 = liver_box[0][2], liver_box[1][2]
        center = (0.3 * f.a, 0.4 * f.b, z0 + 0.3 * (z1 - z0))
        out.append(_blob("gallbladder", center, (rng.uniform(12, 20), rng.uniform(12, 18), rng.uniform(25, 40)),
                         _rot(rng, 25), rng.uniform(0, 20), f.cavity))
    out.append(part("inferior vena cava",
                    lambda c: S.ellipse(c, (0.15 * f.a, y + 35), (14.0, 10.0)),
                    bbox((0.15 * f.a, y + 35, 0.0), (20.0, 16.0, 2000.0)), t.ivc))
    kidney_r = (rng.uniform(24, 30), rng.uniform(22, 27), rng.uniform(48, 60))
    for side, name, dz in ((1.0, "right kidney", -rng.uniform(130, 160)),
                           (-1.0, "left kidney", -rng.uniform(110, 140))):
        center = (side * 0.42 * f.a, y + 4, f.dome_r + dz)
        rot = S.rotation(yaw=side * 0.5, roll=rng.uniform(-0.3, 0.3), pitch=side * rng.uniform(0.05, 0.25))
        out.append(_blob(name, center, kidney_r, rot, t.kidney, f.cavity))
        sinus = (center[0] - side * 10, center[1] + 4, center[2])
        out.append(_blob(f"{name} sinus", sinus, (9.0, 10.0, 0.55 * kidney_r[2]), rot, t.fat + 30))
    spleen_c = (-0.62 * f.a, -0.25 * f.b, f.dome_l - rng.uniform(35, 60))
    out.append(_blob("spleen", spleen_c, (rng.uniform(22, 35), rng.uniform(40, 60), rng.uniform(40, 60)),
                     S.rotation(yaw=rng.uniform(-0.8, -0.3)), t.spleen,
                     lambda c: np.maximum(f.cavity(c) + np.float32(1), c.z - f.diaphragm(c))))
    r_ao = rng.uniform(10, 13)
    out.append(part("aorta", lambda c: S.ellipse(c, (-0.1 * f.a, y + 30), (r_ao, r_ao)),
                    bbox((-0.1 * f.a, y + 30, 0.0), (r_ao + 5, r_ao + 5, 2000.0)), t.aorta))
    return out


def liver_part(liver: Sdf, box: tuple[Vec3, Vec3], t: Tissues) -> Part:
    return part("liver", liver, box, t.liver, LIVER)
