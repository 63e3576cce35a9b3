"""Slices of one series -> one volume's geometry: sorted along the slice normal, checked, with its affines.

Slices are ordered by ImagePositionPatient . normal (normal = row cosine x column cosine), never by
InstanceNumber. A series that cannot be one regular volume raises SeriesRefused with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pydicom

ORIENTATION_TOL = 1e-4  # direction cosines
SPACING_RTOL = 0.02  # each slice within 2 % of the regular step from where it should be
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class SeriesRefused(ValueError):
    """This series cannot become one volume; the message says why."""


@dataclass(frozen=True)
class SeriesGeometry:
    order: tuple[int, ...]  # dataset indices, first to last slice along the normal
    rows: int
    columns: int
    row_cosine: np.ndarray  # direction of increasing column index (LPS)
    column_cosine: np.ndarray  # direction of increasing row index (LPS)
    pixel_spacing: tuple[float, float]  # (between rows, between columns), mm
    origin: np.ndarray  # IPP of the first slice (LPS)
    step: np.ndarray  # IPP(last) - IPP(first) over (n - 1); along the normal (LPS)

    @property
    def n(self) -> int:
        return len(self.order)

    @property
    def slice_spacing(self) -> float:
        return float(np.linalg.norm(self.step))

    def nifti_affine(self) -> np.ndarray:
        """RAS affine of the NIfTI voxel (i, j, k) = (column, row, slice)."""
        lps = np.eye(4)
        lps[:3, 0] = self.row_cosine * self.pixel_spacing[1]
        lps[:3, 1] = self.column_cosine * self.pixel_spacing[0]
        lps[:3, 2] = self.step
        lps[:3, 3] = self.origin
        return LPS_TO_RAS @ lps

    def highdicom_affine(self) -> np.ndarray:
        """LPS affine of the highdicom voxel (slice, row, column)."""
        lps = np.eye(4)
        lps[:3, 0] = self.step
        lps[:3, 1] = self.column_cosine * self.pixel_spacing[0]
        lps[:3, 2] = self.row_cosine * self.pixel_spacing[1]
        lps[:3, 3] = self.origin
        return lps


def _floats(ds: pydicom.Dataset, keyword: str, n: int) -> np.ndarray:
    value = ds.get(keyword)
    if value is None or len(value) != n:
        raise SeriesRefused(f"instance {ds.get('SOPInstanceUID', '?')} has no valid {keyword}")
    return np.array([float(v) for v in value])


def _one_value(values: Sequence[object], what: str) -> None:
    distinct = sorted({str(v) for v in values})
    if len(distinct) > 1:
        raise SeriesRefused(f"mixed {what} in one series ({', '.join(distinct[:4])})")


def is_localizer(ds: pydicom.Dataset) -> bool:
    return any(str(v).upper() == "LOCALIZER" for v in (ds.get("ImageType") or ()))


def series_geometry(datasets: Sequence[pydicom.Dataset]) -> SeriesGeometry:
    """The geometry of a single-frame image series; raises SeriesRefused when it is not one regular volume."""
    if not datasets:
        raise SeriesRefused("no image instances")
    localizers = sum(is_localizer(ds) for ds in datasets)
    if localizers:
        raise SeriesRefused(f"{localizers} localizer image(s) mixed in with {len(datasets) - localizers} slices")
    frames = [int(ds.get("NumberOfFrames", 1) or 1) for ds in datasets]
    if max(frames) > 1:
        raise SeriesRefused(f"multi-frame images ({max(frames)} frames in one instance) are not read; "
                            "send the series as single-frame images")
    if len(datasets) < 2:
        raise SeriesRefused("a single slice is not a volume")
    _one_value([(ds.get("Rows"), ds.get("Columns")) for ds in datasets], "image sizes (rows, columns)")
    iops = np.array([_floats(ds, "ImageOrientationPatient", 6) for ds in datasets])
    if np.abs(iops - iops[0]).max() > ORIENTATION_TOL:
        distinct = {tuple(np.round(v, 3)) for v in iops}
        raise SeriesRefused(f"{len(distinct)} different orientations (ImageOrientationPatient) in one series")
    spacings = np.array([_floats(ds, "PixelSpacing", 2) for ds in datasets])
    if np.abs(spacings - spacings[0]).max() > 1e-4:
        raise SeriesRefused("mixed pixel spacings in one series")
    row_cos, col_cos = iops[0][:3], iops[0][3:]
    normal = np.cross(row_cos, col_cos)
    if not 0.99 < np.linalg.norm(normal) < 1.01:
        raise SeriesRefused("ImageOrientationPatient is not two orthogonal unit vectors")
    positions = np.array([_floats(ds, "ImagePositionPatient", 3) for ds in datasets])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    along = along[order]
    gaps = np.diff(along)
    if np.any(gaps < 1e-3):
        k = int(np.argmax(gaps < 1e-3))
        raise SeriesRefused(f"duplicate slices: two instances at the same position {along[k]:.2f} mm "
                            f"({datasets[order[k]].SOPInstanceUID}, {datasets[order[k + 1]].SOPInstanceUID})")
    n = len(datasets)
    step_len = (along[-1] - along[0]) / (n - 1)
    median = float(np.median(gaps))
    if gaps.max() > 1.5 * median:
        k = int(np.argmax(gaps))
        missing = round(gaps[k] / median) - 1
        raise SeriesRefused(f"missing slice(s): a gap of {gaps[k]:.2f} mm after position {along[k]:.2f} mm where "
                            f"the spacing is {median:.2f} mm (about {missing} slice(s) missing)")
    deviation = np.abs(along - (along[0] + step_len * np.arange(n)))
    if deviation.max() > SPACING_RTOL * step_len:
        raise SeriesRefused(f"uneven slice spacing (from {gaps.min():.3f} to {gaps.max():.3f} mm)")
    step = (positions[order[-1]] - positions[order[0]]) / (n - 1)
    if np.linalg.norm(np.cross(step / np.linalg.norm(step), normal)) > 1e-3:
        raise SeriesRefused("slices are not stacked along their normal (gantry tilt); it is not read")
    ds0 = datasets[0]
    return SeriesGeometry(order=tuple(int(i) for i in order), rows=int(ds0.Rows), columns=int(ds0.Columns),
                          row_cosine=row_cos, column_cosine=col_cos,
                          pixel_spacing=(float(spacings[0][0]), float(spacings[0][1])),
                          origin=positions[order[0]], step=step)
