"""The 2D segmentation operator: a CT (NIfTI) in, a slice-wise model on Triton, a label map + overlay + report out.

The model sees one axial slice at a time (``[1, H, W]`` in, ``[C, H, W]`` out). The canonical volume at the
model's in-plane spacing (its slices kept as they are when the spacing's third value is 0) is cut into
windows one slice deep, fed in batches, blended back into a volume of class scores, and the labels go back
onto the input's grid exactly as the 3D operator's do (app/main.py); the outputs are the same three files.
The rest is the operator library ``odk`` (docs/operators.md). Run as ``python -u -m app.slices``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

import odk

log = logging.getLogger("app")


@dataclass(frozen=True)
class Model:
    """What this operator needs of its model: 2D windows, the spacing and HU window it was trained with."""

    window: odk.WindowModel  # roi (H, W)
    spacing_mm: tuple[float, float, float]  # 0 on an axis: that axis keeps the input's spacing
    hu_window: tuple[float, float]


def prepare(session: odk.TritonSession) -> Model:
    """Check the served model once, before the first study."""
    spec, cfg = session.spec, session.cfg
    window = odk.WindowModel.of(spec, ndim=2)
    spacing, hu = spec.floats("spacing_mm", 3), spec.floats("hu_window", 2)
    model = Model(window, (spacing[0], spacing[1], spacing[2]), (hu[0], hu[1]))
    log.info(f"model {spec.name} v{spec.version}: slices of {'x'.join(map(str, window.roi))} at"
             f" {','.join(f'{s:g}' for s in spacing)} mm (0: kept), HU window {hu[0]:g},{hu[1]:g},"
             f" {spec.windows_per_request(cfg.batch_size)} slices per request, transport {session.transport}")
    return model


# 1. What it reads: a CT volume, refused (StudyError) when it cannot give a right answer.
def read(study: odk.Study, model: Model, cfg: odk.OperatorConfig) -> tuple[odk.Volume, list[str]]:
    vol = odk.read_volume(study.src, cfg.max_voxels, cfg.max_memory_mb)
    odk.check_finite(vol.data)
    odk.check_memory(vol.data, vol.affine, model.spacing_mm, model.window.channels, cfg.max_memory_mb)
    return vol, odk.ct_warnings(float(vol.data.min()), float(vol.data.max()), vol.data.dtype)


# 2. Pre-processing: canonical orientation, the model's in-plane spacing, the HU window mapped to 0..1.
def preprocess(vol: odk.Volume, model: Model) -> tuple[np.ndarray, odk.Geometry]:
    grid, geom = odk.to_model_grid(vol.data, vol.affine, model.spacing_mm)
    return odk.hu_window(grid, *model.hu_window), geom


# 3. The call to Triton: windows one axial slice deep, in batches, blended back into a volume of scores.
def infer(grid: np.ndarray, session: odk.TritonSession, model: Model) -> np.ndarray:
    cfg = session.cfg
    return odk.sliding_window(grid, odk.slicewise(session.predictor()), roi=(*model.window.roi, 1),
                              overlap=cfg.overlap, batch_size=session.spec.windows_per_request(cfg.batch_size),
                              blend=cfg.blend)


# 4. Post-processing: class map, the organ's largest piece in 3D, back onto the input's grid.
def postprocess(scores: np.ndarray, geom: odk.Geometry, model: Model, cfg: odk.OperatorConfig) -> np.ndarray:
    labels = odk.argmax_labels(scores)
    if cfg.largest_component and model.window.nested:
        labels = odk.keep_largest_component(labels)
    return odk.inverse_labels(labels, geom)


# 5. What it writes: the label map, the overlay and the report, committed together.
def write(study: odk.Study, vol: odk.Volume, labels: np.ndarray, geom: odk.Geometry, model: Model,
          result: odk.LabelMapResult, cfg: odk.OperatorConfig, timer: odk.Timer) -> odk.LabelMapResult:
    names = model.window.labels
    if not any(result.volumes_ml.values()):
        result.warnings.append(f"no {' or '.join(names[1:])} found")
    return odk.write_label_map(study, vol, labels, geom, names, result, timer, overlay=cfg.overlay,
                               title=f"{study.src.name}  {model.window.spec.name} (2D)")


def process(study: odk.Study, session: odk.TritonSession, model: Model) -> odk.LabelMapResult:
    """One study through the five steps."""
    cfg, timer = session.cfg, odk.Timer()
    with timer.stage("read"):
        vol, warnings = read(study, model, cfg)
    with timer.stage("preprocess"):
        grid, geom = preprocess(vol, model)
    with timer.stage("inference"):
        scores = infer(grid, session, model)
    del grid
    with timer.stage("postprocess"):
        labels = postprocess(scores, geom, model, cfg)
    del scores
    w = model.window
    result = odk.LabelMapResult.of(study, vol, labels, w.labels, w.nested, transport=session.transport,
                                   warnings=warnings, model={
        "name": w.spec.name, "version": w.spec.version, "spacing_mm": list(model.spacing_mm),
        "hu_window": list(model.hu_window), "roi": [*w.roi, 1], "slicewise": True,
        "label_nesting": "organ" if w.nested else "none"})
    return write(study, vol, labels, geom, model, result, cfg, timer)


if __name__ == "__main__":
    raise SystemExit(odk.main(odk.study_operator(process, prepare)))
