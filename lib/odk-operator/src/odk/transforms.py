"""Pure transforms: input grid <-> canonical RAS+ grid <-> model grid, intensities, and label post-processing.

Data flows one way: input array -> canonical orientation -> model spacing -> intensity transform (forward),
and results come back model grid -> canonical grid -> input orientation (inverse), always onto the input's grid.
Resampling maps the *extent* of the volume onto itself (scipy ``grid_mode=True``): voxel i of an axis of
n input voxels covers [i, i+1) * n_in/n_out of the output axis. The inverse uses the same mapping in the
other direction, so a label map goes back onto exactly the voxels it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel import orientations

Vec3 = tuple[float, float, float]
Shape3 = tuple[int, int, int]


@dataclass(frozen=True)
class Geometry:
    """What the forward transforms did, so that the inverse can undo it exactly."""

    input_shape: Shape3  # spatial shape of the input array, as stored
    ornt: np.ndarray  # nibabel orientation: stored axes -> canonical RAS+ axes
    canonical_shape: Shape3  # shape after reorientation
    canonical_spacing: Vec3  # voxel size (mm) along the canonical axes
    model_shape: Shape3  # shape after resampling to the model spacing


def voxel_spacing(affine: np.ndarray) -> Vec3:
    """Voxel size (mm) along each stored array axis."""
    sp = np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
    return (float(sp[0]), float(sp[1]), float(sp[2]))


def canonical_ornt(affine: np.ndarray) -> np.ndarray:
    """Orientation transform taking stored axes to the closest canonical RAS+ axes."""
    return orientations.io_orientation(np.asarray(affine, dtype=float))


def to_canonical(arr: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Reorder/flip a 3D array into canonical RAS+ axis order (a view; no copy)."""
    return orientations.apply_orientation(arr, ornt)


def from_canonical(arr: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Exact inverse of :func:`to_canonical` (a view; no copy)."""
    inverse = orientations.ornt_transform(orientations.axcodes2ornt(("R", "A", "S")),
                                          orientations.axcodes2ornt(orientations.ornt2axcodes(ornt)))
    return orientations.apply_orientation(arr, inverse)


def canonical_spacing(spacing: Vec3, ornt: np.ndarray) -> Vec3:
    """Stored-axis spacing reordered to the canonical axes."""
    out = [0.0, 0.0, 0.0]
    for stored_axis, (canon_axis, _flip) in enumerate(ornt):
        out[int(canon_axis)] = spacing[stored_axis]
    return (out[0], out[1], out[2])


def resampled_shape(shape: Shape3, spacing: Vec3, target: Vec3) -> Shape3:
    """Number of voxels covering the same extent at the target spacing (at least 1 per axis)."""
    n = [max(1, round(s * sp / t)) for s, sp, t in zip(shape, spacing, target, strict=True)]
    return (n[0], n[1], n[2])


def _source_coords(n_in: int, n_out: int) -> np.ndarray:
    """Centre of each output voxel, in input voxel coordinates, under extent-preserving mapping."""
    return (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5


def _linear_axis(vol: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Separable linear interpolation along one axis (edge values replicated), float32 output."""
    n_in = vol.shape[axis]
    if n_in == n_out:
        return vol.astype(np.float32, copy=False)
    x = np.clip(_source_coords(n_in, n_out), 0.0, n_in - 1)
    lo = np.floor(x).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    w = (x - lo).astype(np.float32)
    shape = [1, 1, 1]
    shape[axis] = n_out
    w = w.reshape(shape)
    a = np.take(vol, lo, axis=axis).astype(np.float32, copy=False)
    b = np.take(vol, hi, axis=axis).astype(np.float32, copy=False)
    b -= a
    b *= w
    a += b
    return a


def _fortran_like(vol: np.ndarray) -> bool:
    """True when the first axis varies fastest in memory (NIfTI data as nibabel reads it)."""
    strides = [abs(st) for st in vol.strides]
    return strides[0] < strides[2]


def resample_linear(vol: np.ndarray, out_shape: Shape3) -> np.ndarray:
    """Trilinear, extent-preserving resampling to ``out_shape`` (float32).

    Axes are processed from the most shrinking first (ties by axis number), so the intermediate arrays
    stay small. The arithmetic does not depend on the memory layout: a Fortran-ordered volume is
    processed through its transpose (fast, contiguous gathers) and comes back Fortran-ordered.
    """
    order = sorted(range(3), key=lambda a: (out_shape[a] / vol.shape[a], a))
    if _fortran_like(vol):
        out = vol.T
        for axis in order:
            out = _linear_axis(out, 2 - axis, out_shape[axis])
        return out.T.astype(np.float32, copy=False)
    out = vol
    for axis in order:
        out = _linear_axis(out, axis, out_shape[axis])
    return out.astype(np.float32, copy=False)


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """For each of ``n_out`` voxels, the index of the nearest of ``n_in`` voxels (extent-preserving)."""
    x = _source_coords(n_in, n_out)
    return np.clip(np.floor(x + 0.5), 0, n_in - 1).astype(np.intp)


def resample_nearest(vol: np.ndarray, out_shape: Shape3) -> np.ndarray:
    """Nearest-neighbour, extent-preserving resampling (keeps dtype): for label maps.

    Nearest indices are monotonic, so each axis is a ``repeat`` (upsampling) or a ``take`` (downsampling).
    """
    transposed = _fortran_like(vol)
    out = vol.T if transposed else vol
    for axis in range(3):
        ax = 2 - axis if transposed else axis
        n_in, n_out = vol.shape[axis], out_shape[axis]
        if n_in == n_out:
            continue
        idx = nearest_indices(n_in, n_out)
        out = (np.repeat(out, np.bincount(idx, minlength=n_in), axis=ax) if n_out > n_in
               else np.take(out, idx, axis=ax))
    return out.T if transposed else out


def hu_window(vol: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map Hounsfield units to 0..1: (x - lo) / (hi - lo), clipped. float32, in place when possible."""
    out = vol if vol.dtype == np.float32 else vol.astype(np.float32)
    out -= np.float32(lo)
    out *= np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    return out


def zscore(vol: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(x - mean) / std over the voxels of ``mask`` (all without one), float32; a constant volume gives zeros.

    >>> zscore(np.array([1.0, 2.0, 3.0], np.float32))      # array([-1.2247, 0., 1.2247])
    """
    out = vol.astype(np.float32, copy=True)
    values = out[mask] if mask is not None else out
    mean, std = float(values.mean()), float(values.std())
    out -= np.float32(mean)
    if std > 0:
        out *= np.float32(1.0 / std)
    return out


def to_model_grid(arr: np.ndarray, affine: np.ndarray, model_spacing: Vec3) -> tuple[np.ndarray, Geometry]:
    """Input array (any orientation, any dtype) -> float32 volume in canonical RAS+ at the model's spacing, and
    the geometry that :func:`inverse_labels` undoes. A spacing of 0 on an axis keeps that axis as it is.

    >>> vol, geom = to_model_grid(ct.data, ct.affine, (2.5, 2.5, 2.5))
    >>> labels = inverse_labels(model_labels, geom)          # back on the input's grid
    """
    if arr.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {arr.shape}")
    ornt = canonical_ornt(affine)
    canon = to_canonical(arr, ornt)
    c_spacing = canonical_spacing(voxel_spacing(affine), ornt)
    m_shape = resampled_shape(canon.shape, c_spacing, _target(model_spacing, c_spacing))
    vol = resample_linear(canon, m_shape)
    geom = Geometry(input_shape=(arr.shape[0], arr.shape[1], arr.shape[2]), ornt=ornt,
                    canonical_shape=(canon.shape[0], canon.shape[1], canon.shape[2]),
                    canonical_spacing=c_spacing, model_shape=m_shape)
    return vol, geom


def _target(model_spacing: Vec3, c_spacing: Vec3) -> Vec3:
    """The model's spacing, an axis of 0 keeping the canonical volume's own."""
    t = [m if m > 0 else c for m, c in zip(model_spacing, c_spacing, strict=True)]
    return (t[0], t[1], t[2])


def model_grid_shape(shape: Shape3, affine: np.ndarray, model_spacing: Vec3) -> Shape3:
    """The shape :func:`to_model_grid` gives a volume of ``shape`` stored with ``affine`` (no voxels needed)."""
    ornt = canonical_ornt(affine)
    c_spacing = canonical_spacing(voxel_spacing(affine), ornt)
    c_shape = [0, 0, 0]
    for stored_axis, (canon_axis, _flip) in enumerate(ornt):
        c_shape[int(canon_axis)] = shape[stored_axis]
    return resampled_shape((c_shape[0], c_shape[1], c_shape[2]), c_spacing, _target(model_spacing, c_spacing))


def forward(arr: np.ndarray, affine: np.ndarray, model_spacing: Vec3,
            window: tuple[float, float]) -> tuple[np.ndarray, Geometry]:
    """:func:`to_model_grid` then :func:`hu_window`: the CT models' usual pre-processing, in 0..1."""
    vol, geom = to_model_grid(arr, affine, model_spacing)
    return hu_window(vol, *window), geom


def labels_to_model(labels: np.ndarray, geom: Geometry) -> np.ndarray:
    """A label map on the input grid -> the model grid (nearest), e.g. for training targets."""
    return resample_nearest(to_canonical(labels, geom.ornt), geom.model_shape)


def inverse_labels(labels: np.ndarray, geom: Geometry) -> np.ndarray:
    """Model-grid label map -> the input's grid and orientation (nearest; exact inverse of forward)."""
    if labels.shape != geom.model_shape:
        raise ValueError(f"label map shape {labels.shape} is not the model grid {geom.model_shape}")
    # Reorder the small model-grid map to Fortran order (how NIfTI stores voxels) before upsampling, so the
    # full-size result comes out Fortran-ordered instead of being transposed afterwards (10x faster on a CT).
    canon = resample_nearest(np.asfortranarray(labels), geom.canonical_shape)
    return np.asfortranarray(from_canonical(canon, geom.ornt))


def argmax_labels(probs: np.ndarray) -> np.ndarray:
    """(C, X, Y, Z) scores -> uint8 class map (X, Y, Z); ties go to the lower class, as np.argmax.

    One comparison per class instead of np.argmax's int64 index volume: several times faster.
    """
    labels = np.zeros(probs.shape[1:], dtype=np.uint8)
    best = probs[0].copy()
    for c in range(1, probs.shape[0]):
        better = probs[c] > best
        labels[better] = c
        np.maximum(best, probs[c], out=best)
    return labels


def keep_largest_component(labels: np.ndarray) -> np.ndarray:
    """Keep only the largest connected component of the foreground (every label > 0 together); the rest
    becomes background. For nested labels (an organ and its lesions) a lesion on the organ's edge does not
    split it.

    >>> labels = keep_largest_component(labels)              # stray islands of false positives removed
    """
    from scipy import ndimage  # imported here: it costs ~0.2 s of every process start

    organ = labels > 0
    if not organ.any():
        return labels
    components, n = ndimage.label(organ)
    if n <= 1:
        return labels
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    keep = components == int(np.argmax(sizes))
    out = labels.copy()
    out[~keep] = 0
    return out


def label_counts(labels: np.ndarray, n_labels: int) -> list[int]:
    """Voxel count of each label 0..n_labels-1."""
    # count_nonzero per label avoids bincount's int64 copy of the whole (input-sized) volume.
    return [int(np.count_nonzero(labels == k)) for k in range(n_labels)]


def volumes_ml(counts: list[int], spacing_mm: tuple[float, float, float]) -> list[float]:
    """Volume of each label in millilitres, from voxel counts and voxel size."""
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    return [round(c * voxel_ml, 3) for c in counts]
