"""Post-processing on the model grid: class map, clean-up, volumes. Pure functions."""

from __future__ import annotations

import numpy as np


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


def keep_largest_organ(labels: np.ndarray) -> np.ndarray:
    """Keep only the largest connected liver (liver + lesion) component; the rest becomes background.

    Lesions are part of the organ, so a lesion on the liver's edge does not split it.
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
