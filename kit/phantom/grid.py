"""The scanner grid a phantom is rendered on, a coarser working grid, and the patient's pose in it.

World coordinates are RAS+ millimetres (+x towards the patient's right, +y anterior, +z superior); the
stored array axes are the world axes (canonical orientation), voxel (0, 0, 0) at ``origin``. The patient
lies in the scanner shifted by ``shift`` and turned by ``yaw`` about the table axis.

Shapes are evaluated on a working grid that is coarser in-plane (about 1.4 mm), then interpolated onto
the scanner grid with the same extent-preserving linear mapping the operator uses, which also gives
smooth, partial-volume edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kit.phantom.sdf import Coords

Shape3 = tuple[int, int, int]
Vec3 = tuple[float, float, float]

WORKING_SPACING_MM = 1.4


@dataclass(frozen=True)
class Grid:
    shape: Shape3
    spacing: Vec3
    shift: Vec3 = (0.0, 0.0, 0.0)  # patient origin in world coordinates
    yaw: float = 0.0  # radians, patient turned about the z axis
    coarse_shape: Shape3 = field(init=False)

    def __post_init__(self) -> None:
        coarse = tuple(max(2, round(n * sp / max(sp, WORKING_SPACING_MM)))
                       for n, sp in zip(self.shape, self.spacing, strict=True))
        object.__setattr__(self, "coarse_shape", coarse)

    @property
    def origin(self) -> np.ndarray:
        """World coordinates of voxel (0, 0, 0): the grid is centred on the scanner's isocentre."""
        return -(np.asarray(self.shape, float) - 1) / 2 * np.asarray(self.spacing, float)

    @property
    def affine(self) -> np.ndarray:
        aff = np.diag([*self.spacing, 1.0])
        aff[:3, 3] = self.origin
        return aff

    def fine_index(self, axis: int, coarse_index: np.ndarray) -> np.ndarray:
        """Scanner-grid index (fractional) of working-grid voxel centres (extent-preserving)."""
        n, nc = self.shape[axis], self.coarse_shape[axis]
        return (coarse_index + 0.5) * (n / nc) - 0.5

    def coarse_index(self, axis: int, fine_index: np.ndarray) -> np.ndarray:
        n, nc = self.shape[axis], self.coarse_shape[axis]
        return (fine_index + 0.5) * (nc / n) - 0.5

    def world_axis(self, axis: int, coarse_index: np.ndarray) -> np.ndarray:
        return self.origin[axis] + self.fine_index(axis, coarse_index) * self.spacing[axis]

    def to_world(self, p: np.ndarray) -> np.ndarray:
        """Patient (N, 3) -> world (N, 3)."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        return np.stack([c * x - s * y, s * x + c * y, z], axis=1) + np.asarray(self.shift)

    def block(self, lo: Vec3, hi: Vec3) -> tuple[slice, slice, slice] | None:
        """Working-grid slices covering a patient-space bounding box, or None when it misses the grid."""
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        w = self.to_world(corners)
        out = []
        for axis in range(3):
            f_lo = (w[:, axis].min() - self.origin[axis]) / self.spacing[axis]
            f_hi = (w[:, axis].max() - self.origin[axis]) / self.spacing[axis]
            c_lo = int(np.floor(self.coarse_index(axis, np.array(f_lo)))) - 1
            c_hi = int(np.ceil(self.coarse_index(axis, np.array(f_hi)))) + 2
            c_lo, c_hi = max(c_lo, 0), min(c_hi, self.coarse_shape[axis])
            if c_hi <= c_lo:
                return None
            out.append(slice(c_lo, c_hi))
        return out[0], out[1], out[2]

    def coords(self, block: tuple[slice, slice, slice]) -> Coords:
        """Patient coordinates of the working-grid voxels in ``block`` (x, y: (a, b, 1); z: (1, 1, c))."""
        wx, wy, wz = (self.world_axis(a, np.arange(block[a].start, block[a].stop, dtype=float)) for a in range(3))
        dx = wx[:, None] - self.shift[0]
        dy = wy[None, :] - self.shift[1]
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        px = (c * dx + s * dy).astype(np.float32)[:, :, None]
        py = (-s * dx + c * dy).astype(np.float32)[:, :, None]
        pz = (wz - self.shift[2]).astype(np.float32)[None, None, :]
        return Coords(px, py, pz)
