"""The segmentation operator: a CT (NIfTI) in, a 3D model on Triton, a label map + overlay PNG + report out.

This is the file to edit to make the operator your own (docs/writing-an-operator.md). Its five steps are the
five functions below: what it reads, its pre-processing, its call to Triton, its post-processing, what it
writes. Everything else (finding studies, geometry and its inverse, the Triton session, atomic outputs,
failures, signals, the driver) is the operator library ``odk`` (docs/operator-library.md).
Run as ``python -u -m app``; configured by env.list (docs/configuration.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

import odk

log = logging.getLogger("app")
LIVER_ML_MAX = 4000.0  # above this the "liver" is not one (a large adult liver is 2-3 L)


@dataclass(frozen=True)
class Model:
    """What this operator needs of its model: 3D windows, the spacing and HU window it was trained with."""

    window: odk.WindowModel
    spacing_mm: tuple[float, float, float]
    hu_window: tuple[float, float]


def prepare(session: odk.TritonSession) -> Model:
    """Check the served model once, before the first study."""
    spec, cfg = session.spec, session.cfg
    window = odk.WindowModel.of(spec, ndim=3)
    spacing, hu = spec.floats("spacing_mm", 3), spec.floats("hu_window", 2)
    model = Model(window, (spacing[0], spacing[1], spacing[2]), (hu[0], hu[1]))
    log.info(f"model {spec.name} v{spec.version}: window {'x'.join(map(str, window.roi))} at"
                  f" {','.join(f'{s:g}' for s in spacing)} mm, HU window {','.join(f'{w:g}' for w in hu)},"
                  f" batch {spec.windows_per_request(cfg.batch_size)}, transport {session.transport},"
                  f" engine {session.engine}")
    return model


# 1. What it reads: a CT volume, refused (StudyError) when it cannot give a right answer.
def read(study: odk.Study, model: Model, cfg: odk.OperatorConfig) -> tuple[odk.Volume, list[str]]:
    vol = odk.read_volume(study.src, cfg.max_voxels, cfg.max_memory_mb)
    odk.check_finite(vol.data)
    odk.check_memory(vol.data, vol.affine, model.spacing_mm, model.window.channels, cfg.max_memory_mb)
    return vol, odk.ct_warnings(float(vol.data.min()), float(vol.data.max()), vol.data.dtype)


# 2. Pre-processing: canonical orientation, the model's spacing, the HU window mapped to 0..1.
def preprocess(vol: odk.Volume, model: Model) -> tuple[np.ndarray, odk.Geometry]:
    grid, geom = odk.to_model_grid(vol.data, vol.affine, model.spacing_mm)
    return odk.hu_window(grid, *model.hu_window), geom


# 3. The call to Triton: overlapping windows in batches, blended into class scores.
def infer(grid: np.ndarray, session: odk.TritonSession, model: Model) -> np.ndarray:
    cfg = session.cfg
    return odk.sliding_window(grid, session.predictor(), roi=model.window.roi, overlap=cfg.overlap,
                              batch_size=session.spec.windows_per_request(cfg.batch_size), blend=cfg.blend)


# 4. Post-processing: class map, the organ's largest piece, back onto the input's grid.
def postprocess(scores: np.ndarray, geom: odk.Geometry, model: Model, cfg: odk.OperatorConfig) -> np.ndarray:
    labels = odk.argmax_labels(scores)
    if cfg.largest_component and model.window.nested:
        labels = odk.keep_largest_component(labels)
    return odk.inverse_labels(labels, geom)


# 5. What it writes: the label map, the overlay and the report (with the organ's warnings), committed together.
def write(study: odk.Study, vol: odk.Volume, labels: np.ndarray, geom: odk.Geometry, model: Model,
          result: odk.LabelMapResult, cfg: odk.OperatorConfig, timer: odk.Timer) -> odk.LabelMapResult:
    w = model.window
    organ = w.labels[1] if w.nested else " or ".join(w.labels[1:])
    result.warnings += organ_warnings(organ, result.volumes_ml.get(w.labels[1], 0.0) if w.nested
                                      else sum(result.volumes_ml.values()))
    return odk.write_label_map(study, vol, labels, geom, w.labels, result, timer, overlay=cfg.overlay,
                               title=f"{study.src.name}  {w.spec.name}")


def organ_warnings(organ: str, volume_ml: float) -> list[str]:
    """The model's first foreground class (the organ): none found, or (for a liver) implausibly large."""
    if volume_ml <= 0:
        return [f"no {organ} found"]
    if organ.strip().lower() == "liver" and volume_ml > LIVER_ML_MAX:
        return [f"liver volume {volume_ml:.0f} mL is implausible (more than {LIVER_ML_MAX:.0f} mL)"]
    return []


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
        "hu_window": list(model.hu_window), "roi": list(w.roi), "label_nesting": "organ" if w.nested else "none"})
    return write(study, vol, labels, geom, model, result, cfg, timer)


if __name__ == "__main__":
    raise SystemExit(odk.main(odk.study_operator(process, prepare)))
