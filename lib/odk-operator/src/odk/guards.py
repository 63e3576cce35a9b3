"""Checks on a study before and after its voxels are read: size limits, finite values, plausibility.

Pure functions; a refusal is a StudyError (that study fails, the run goes on), a doubt is a warning
that goes into the study's report and the log.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .errors import StudyError

_MB = 1024 * 1024


def machine_memory_bytes() -> int:
    """Physical memory, or the cgroup (container) limit when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        raw = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(raw)) if raw.isdigit() else total


def memory_limit_mb(configured: int) -> int:
    return configured if configured > 0 else int(machine_memory_bytes() * 0.8) // _MB


def check_voxels(shape: tuple[int, ...], itemsize: int, max_voxels: int, max_memory_mb: int, offset: int = 0) -> None:
    """Refuse a volume whose header promises more voxels than allowed (checked before reading them); ``offset``
    is where its voxels start (the header and its extensions are read too)."""
    n = math.prod(int(s) for s in shape)
    if n > max_voxels:
        raise StudyError(f"{'x'.join(map(str, shape))} = {n:,} voxels is more than ODK_MAX_VOXELS={max_voxels:,};"
                         " raise ODK_MAX_VOXELS if this volume is real")
    need = (n * itemsize * 2 + offset) // _MB
    if need > memory_limit_mb(max_memory_mb):
        raise StudyError(f"reading {'x'.join(map(str, shape))} voxels needs about {need:,} MB, more than"
                         f" ODK_MAX_MEMORY_MB={memory_limit_mb(max_memory_mb):,}")


def working_memory_mb(in_voxels: int, itemsize: int, model_voxels: int, channels: int) -> int:
    """Rough peak memory of one study: the input (read buffer + array), float32 resampling steps and
    full-size labels, and on the model grid the volume, C score channels, weights and the class map."""
    return (in_voxels * (2 * itemsize + 10) + model_voxels * 4 * (channels + 3)) // _MB


def check_working_memory(in_shape: tuple[int, int, int], itemsize: int, model_shape: tuple[int, int, int],
                         channels: int, max_memory_mb: int) -> None:
    limit = memory_limit_mb(max_memory_mb)
    need = working_memory_mb(math.prod(in_shape), itemsize, math.prod(model_shape), channels)
    if need > limit:
        raise StudyError(f"processing needs about {need:,} MB (model grid {'x'.join(map(str, model_shape))}),"
                         f" more than ODK_MAX_MEMORY_MB={limit:,}; check ODK_SPACING_MM and the voxel size,"
                         " or raise ODK_MAX_MEMORY_MB")


def check_finite(data: np.ndarray) -> None:
    """Refuse NaN/Inf voxels: any arithmetic on them (resampling, windowing) spreads them silently."""
    if data.dtype.kind != "f":
        return
    bad = ~np.isfinite(data)
    n = int(np.count_nonzero(bad))
    if n:
        first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), data.shape))
        raise StudyError(f"{n:,} non-finite voxel(s) (NaN or Inf), the first at index {first}; a CT has none:"
                         " fix the conversion that wrote this file")


def ct_warnings(lo: float, hi: float, dtype: np.dtype) -> list[str]:
    """Doubts about the intensities being CT Hounsfield units."""
    if lo == hi:
        return [f"every voxel is {lo:g}: this is not a CT image"]
    if lo >= 0:
        return [f"intensities {lo:g}..{hi:g} ({dtype}) have nothing below 0, so they are not Hounsfield units"
                " (air is -1000 HU); the segmentation is not reliable"]
    return []


def check_memory(data: np.ndarray, affine: np.ndarray, spacing_mm: tuple[float, float, float], channels: int,
                 max_memory_mb: int) -> None:
    """:func:`check_working_memory` of a volume about to be resampled to ``spacing_mm`` (as
    :func:`odk.to_model_grid` does) for a model of ``channels`` output channels: StudyError when it would need
    more than ODK_MAX_MEMORY_MB.

    >>> check_memory(vol.data, vol.affine, (2.5, 2.5, 2.5), 3, cfg.max_memory_mb)
    """
    from .transforms import model_grid_shape

    shape = (int(data.shape[0]), int(data.shape[1]), int(data.shape[2]))
    check_working_memory(shape, data.dtype.itemsize, model_grid_shape(shape, affine, spacing_mm), channels,
                         max_memory_mb)
