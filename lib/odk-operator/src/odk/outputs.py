"""A label map's study outputs, committed together: ``<stem>_seg.nii.gz``, ``<stem>_overlay.png``, ``<stem>.json``.

What every operator that segments writes, whatever its model (3D windows, 2D slices): the label map on the
input's grid with the input's header, the QA overlay of the canonical volume, and the report. All three are
staged and appear together, or none does (:class:`odk.StudyWriter`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .files import StudyWriter
from .report import LabelMapResult, Timer

if TYPE_CHECKING:
    import numpy as np

    from .files import Study
    from .nifti import Volume
    from .transforms import Geometry


def write_label_map(study: Study, vol: Volume, labels: np.ndarray, geom: Geometry, names: Sequence[str],
                    result: LabelMapResult, timer: Timer, *, overlay: bool = True, title: str = "") -> LabelMapResult:
    """Write ``labels`` (on ``vol``'s grid, values 0..len(names)-1) as the study's label map, its overlay
    (unless ``overlay`` is False; ``title`` above the panels) and ``result`` as its report, with the timings of
    ``timer`` (its ``write`` and ``overlay`` stages included) and the output names filled in; the result.

    >>> odk.write_label_map(study, vol, labels, geom, model.labels, result, timer, overlay=cfg.overlay,
    ...                     title=f"{study.src.name}  {model.spec.name}")
    """
    from .nifti import label_bytes
    from .overlay import render
    from .transforms import to_canonical

    seg, png, report = study.output("_seg.nii.gz"), study.output("_overlay.png"), study.output(".json")
    with StudyWriter() as writer:
        with timer.stage("write"):
            writer.add(seg, label_bytes(labels, vol, names))
        if overlay:
            with timer.stage("overlay"):
                writer.add(png, render(to_canonical(vol.data, geom.ornt), to_canonical(labels, geom.ornt),
                                       geom.canonical_spacing, title=title, names=names[1:]))
        result.timings_s = timer.total()
        result.outputs = {"segmentation": seg.name, "overlay": png.name, "report": report.name}
        writer.add(report, result.dumps())
        writer.commit()
    return result
