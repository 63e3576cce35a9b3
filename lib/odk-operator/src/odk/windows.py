"""Sliding-window inference over a model-grid volume, with constant or Gaussian blending.

The window grid follows the usual convention (as MONAI's ``sliding_window_inference``): per axis,
step = int(roi * (1 - overlap)), windows = ceil((size - roi) / step) + 1, the last one moved back to
the edge. A volume smaller than the window along an axis is padded with zeros (the bottom of the
intensity window) and the padding is cropped off the result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import lru_cache

import numpy as np

Shape3 = tuple[int, int, int]
Predict = Callable[[np.ndarray], np.ndarray]  # (N,1,*roi) float32 -> (N,C,*roi) float32
BLENDS = ("constant", "gaussian")


def axis_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Window start offsets along one axis covering ``size`` voxels (``size >= roi``)."""
    if size <= roi:
        return [0]
    step = max(1, int(roi * (1.0 - overlap)))
    n = math.ceil((size - roi) / step) + 1
    return [min(i * step, size - roi) for i in range(n)]


def window_starts(shape: Shape3, roi: Shape3, overlap: float) -> list[Shape3]:
    """All window corners, in C order (last axis fastest)."""
    per_axis = [axis_starts(s, r, overlap) for s, r in zip(shape, roi, strict=True)]
    return [(a, b, c) for a in per_axis[0] for b in per_axis[1] for c in per_axis[2]]


@lru_cache(maxsize=8)
def importance_map(roi: Shape3, blend: str) -> np.ndarray:
    """Per-voxel blending weight of a window: ones, or a Gaussian with sigma = roi / 8."""
    if blend == "constant":
        return np.ones(roi, dtype=np.float32)
    if blend != "gaussian":
        raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
    axes = []
    for r in roi:
        x = np.arange(r, dtype=np.float64) - (r - 1) / 2.0
        axes.append(np.exp(-0.5 * (x / (0.125 * r)) ** 2))
    w = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    w = w / w.max()
    # Keep the edges from vanishing entirely, so every voxel gets a usable weight.
    return np.maximum(w, 1e-3).astype(np.float32)


def _batches(starts: list[Shape3], batch_size: int) -> Iterator[list[Shape3]]:
    for i in range(0, len(starts), batch_size):
        yield starts[i:i + batch_size]


def sliding_window(vol: np.ndarray, predict: Predict, roi: Shape3 = (96, 96, 96), overlap: float = 0.25,
                   batch_size: int = 4, blend: str = "gaussian") -> np.ndarray:
    """Run ``predict`` over windows of ``vol`` (X,Y,Z float32) and blend into (C,X,Y,Z) float32.

    The result is the weighted mean of the overlapping window outputs at each voxel.
    """
    if vol.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {vol.shape}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    shape = vol.shape
    padded_shape = tuple(max(s, r) for s, r in zip(shape, roi, strict=True))
    if padded_shape != shape:
        padded = np.zeros(padded_shape, dtype=np.float32)
        padded[: shape[0], : shape[1], : shape[2]] = vol
        vol = padded
    weight = importance_map(tuple(roi), blend)
    starts = window_starts(padded_shape, roi, overlap)
    acc: np.ndarray | None = None
    norm = np.zeros(padded_shape, dtype=np.float32)
    batch = np.empty((min(batch_size, len(starts)), 1, *roi), dtype=np.float32)
    for group in _batches(starts, batch_size):
        for k, (x, y, z) in enumerate(group):
            batch[k, 0] = vol[x:x + roi[0], y:y + roi[1], z:z + roi[2]]
        out = predict(batch[: len(group)])
        if out.ndim != 5 or out.shape[0] != len(group) or tuple(out.shape[2:]) != tuple(roi):
            expected = (len(group), "C", *roi)
            raise ValueError(f"model returned shape {out.shape}, expected {expected}")
        if acc is None:
            acc = np.zeros((out.shape[1], *padded_shape), dtype=np.float32)
        for k, (x, y, z) in enumerate(group):
            region = (slice(None), slice(x, x + roi[0]), slice(y, y + roi[1]), slice(z, z + roi[2]))
            acc[region] += out[k] * weight
            norm[region[1:]] += weight
    assert acc is not None
    acc /= norm
    return acc[:, : shape[0], : shape[1], : shape[2]]


def slicewise(predict: Predict) -> Predict:
    """A 2D model's ``predict`` ((N,1,H,W) -> (N,C,H,W)) as one of windows one voxel deep ((N,1,H,W,1) ->
    (N,C,H,W,1)), so that :func:`sliding_window` with ``roi=(H, W, 1)`` feeds it axial slices in batches and
    blends them back into a volume.

    >>> scores = sliding_window(vol, slicewise(session.predictor()), roi=(128, 128, 1), batch_size=16)
    """

    def predict_slices(batch: np.ndarray) -> np.ndarray:
        return predict(np.ascontiguousarray(batch[..., 0]))[..., None]

    return predict_slices


def predict_batched(items: np.ndarray, predict: Predict, batch_size: int) -> np.ndarray:
    """``predict`` over ``items`` (N, ...) in requests of at most ``batch_size``, results concatenated (copied
    out of each request: a shared-memory result is only valid until the next request).

    >>> probabilities = predict_batched(np.stack(volumes), session.predictor(), spec.windows_per_request())
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts = [np.array(predict(np.ascontiguousarray(items[i:i + batch_size])), copy=True)
             for i in range(0, len(items), batch_size)]
    return np.concatenate(parts) if parts else np.empty((0,), np.float32)
