"""Approximate signed distance functions (mm; negative inside) on broadcastable coordinate arrays.

Every primitive takes patient coordinates ``c`` (mm, RAS+ sense: +x towards the patient's right, +y anterior,
+z superior; see :mod:`kit.phantom.grid`) and returns an array that broadcasts against them. The
distances are approximations that are exact on the surface, which is all the renderer needs: it turns
them into a partial-volume ramp about one millimetre wide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class Coords:
    """Patient coordinates (mm) of a block of voxels; x, y, z broadcast against each other."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray


def rotation(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation matrix (radians) about z, then y, then x."""
    cz, sz = np.cos(yaw), np.sin(yaw)
    cy, sy = np.cos(pitch), np.sin(pitch)
    cx, sx = np.cos(roll), np.sin(roll)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return rz @ ry @ rx


def _local(c: Coords, center: Vec3, rot: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dx, dy, dz = c.x - np.float32(center[0]), c.y - np.float32(center[1]), c.z - np.float32(center[2])
    if rot is None:
        return dx, dy, dz
    r = rot.astype(np.float32)
    # local = R^T d
    return (r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz,
            r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
            r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz)


def ellipsoid(c: Coords, center: Vec3, radii: Vec3, rot: np.ndarray | None = None) -> np.ndarray:
    """Ellipsoid (Quilez's first-order distance estimate)."""
    lx, ly, lz = _local(c, center, rot)
    rx, ry, rz = (np.float32(r) for r in radii)
    k0 = np.sqrt((lx / rx) ** 2 + (ly / ry) ** 2 + (lz / rz) ** 2)
    k1 = np.sqrt((lx / (rx * rx)) ** 2 + (ly / (ry * ry)) ** 2 + (lz / (rz * rz)) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, np.float32(1e-6))


def ellipse(c: Coords, center: tuple[float, float], radii: tuple[float, float],
            angle: float = 0.0) -> np.ndarray:
    """Infinite elliptic cylinder along z (depends on x, y only)."""
    dx, dy = c.x - np.float32(center[0]), c.y - np.float32(center[1])
    if angle:
        ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        dx, dy = ca * dx + sa * dy, -sa * dx + ca * dy
    rx, ry = np.float32(radii[0]), np.float32(radii[1])
    k0 = np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2)
    k1 = np.sqrt((dx / (rx * rx)) ** 2 + (dy / (ry * ry)) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, np.float32(1e-6))


def box(c: Coords, center: Vec3, half: Vec3) -> np.ndarray:
    """Axis-aligned box."""
    qx = np.abs(c.x - np.float32(center[0])) - np.float32(half[0])
    qy = np.abs(c.y - np.float32(center[1])) - np.float32(half[1])
    qz = np.abs(c.z - np.float32(center[2])) - np.float32(half[2])
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2 + np.maximum(qz, 0) ** 2)
    return outside + np.minimum(np.maximum(np.maximum(qx, qy), qz), 0)


def periodic_z(c: Coords, period: float, solid: float, phase: float = 0.0) -> np.ndarray:
    """Repeating axial slabs: ``solid`` mm thick, every ``period`` mm (vertebrae between discs)."""
    p = np.float32(period)
    t = np.mod(c.z - np.float32(phase), p) - p / 2
    return np.abs(t) - np.float32(solid / 2)


def waves(rng: np.random.Generator, amplitude: float, wavelength: tuple[float, float],
          n: int = 4) -> Callable[[Coords], np.ndarray]:
    """A smooth random bump field (sum of plane waves) to make surfaces irregular.

    The random parameters are drawn now, so the returned field is the same every time it is evaluated.
    """
    params = []
    for _ in range(n):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        k = direction * (2 * np.pi / rng.uniform(*wavelength))
        phi = rng.uniform(0, 2 * np.pi)
        a = amplitude / np.sqrt(n) * rng.uniform(0.5, 1.5)
        params.append(tuple(np.float32(v) for v in (*k, phi, a)))

    def field(c: Coords) -> np.ndarray:
        out = np.float32(0.0)
        for kx, ky, kz, phi, a in params:
            out = out + a * np.sin(kx * c.x + ky * c.y + kz * c.z + phi)
        return out

    return field


def union(*ds: np.ndarray) -> np.ndarray:
    out = ds[0]
    for d in ds[1:]:
        out = np.minimum(out, d)
    return out


def smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum: joins two shapes with a fillet of about ``k`` mm."""
    kk = np.float32(k)
    h = np.maximum(kk - np.abs(a - b), 0) / kk
    return np.minimum(a, b) - h * h * kk * np.float32(0.25)
