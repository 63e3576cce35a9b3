"""The classification operator: a CT (NIfTI) in, a 3D classifier on Triton, a study-level answer out (JSON only).

"Does this CT contain a liver lesion?": the whole volume, resized to the model's fixed input shape, gets the
probability of each of the model's two classes; the study is positive (the second class) when that
probability reaches the threshold (the model's ``threshold`` parameter, or ODK_THRESHOLD). Given the
segmentation operator's output as a second input, the report adds that study's volumes and says where the
two models disagree. The same five steps as app/main.py; the rest is the operator library ``odk``
(docs/operators.md). Run as ``python -u -m app.classification``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import odk

log = logging.getLogger("app")


@dataclass(frozen=True)
class Model:
    """What this operator needs of its model: one volume of a fixed shape in, two class scores out."""

    spec: odk.ModelSpec
    shape: tuple[int, int, int]  # the whole volume is resized to this (parameter resize_shape)
    hu_window: tuple[float, float]
    labels: tuple[str, ...]  # (negative, positive)
    threshold: float  # positive when p(labels[1]) >= threshold
    logits: bool  # output_activation none: the softmax is applied here


@dataclass
class ClassificationResult(odk.StudyResult):
    """The report's own fields: the answer, its probability and threshold, and the segmentation's volumes."""

    prediction: str = ""
    probability: float = 0.0  # of the positive class
    threshold: float = 0.0
    probabilities: dict[str, float] = field(default_factory=dict)
    segmentation: dict[str, Any] = field(default_factory=dict)  # the segmentation operator's report, if given


def prepare(session: odk.TritonSession) -> Model:
    """Check the served model once, before the first study."""
    spec = session.spec
    shape = spec.floats("resize_shape", 3)
    if spec.input_dims != (1, *shape) or spec.output_dims != (2,):
        raise odk.ModelMismatch(f"model {spec.name} has input {list(spec.input_dims)} and output"
                                f" {list(spec.output_dims)}; expected [1, {', '.join(f'{s:g}' for s in shape)}]"
                                " (its resize_shape) and [2] (two class scores)")
    if (spec.param("axes") or "RAS").upper() != "RAS":
        raise odk.ModelMismatch(f"model {spec.name}: parameter axes={spec.param('axes')!r}; this operator feeds"
                                " RAS-canonical volumes")
    logits = spec.choice("output_activation", "none", {"softmax": "", "none": ""}) == "none"
    default = spec.floats("threshold", 1)[0] if spec.param("threshold") else 0.5
    hu = spec.floats("hu_window", 2)
    model = Model(spec, (int(shape[0]), int(shape[1]), int(shape[2])), (hu[0], hu[1]), spec.labels(2),
                  odk.number(os.environ, "ODK_THRESHOLD", default, maximum=1.0), logits)
    log.info(f"model {spec.name} v{spec.version}: volume resized to {'x'.join(map(str, model.shape))}, HU window"
             f" {hu[0]:g},{hu[1]:g}, positive '{model.labels[1]}' at p >= {model.threshold:g}, transport"
             f" {session.transport}")
    return model


# 1. What it reads: a CT volume, refused (StudyError) when it cannot give a right answer.
def read(study: odk.Study, model: Model, cfg: odk.OperatorConfig) -> tuple[odk.Volume, list[str]]:
    vol = odk.read_volume(study.src, cfg.max_voxels, cfg.max_memory_mb)
    odk.check_finite(vol.data)
    odk.check_working_memory(vol.data.shape, vol.data.dtype.itemsize, model.shape, 1, cfg.max_memory_mb)
    return vol, odk.ct_warnings(float(vol.data.min()), float(vol.data.max()), vol.data.dtype)


# 2. Pre-processing: canonical orientation, the whole volume resized to the model's shape, HU window to 0..1.
def preprocess(vol: odk.Volume, model: Model) -> np.ndarray:
    canonical = odk.to_canonical(vol.data, odk.canonical_ornt(vol.affine))
    return odk.hu_window(odk.resample_linear(canonical, model.shape), *model.hu_window)


# 3. The call to Triton: the study as a batch of one (odk batches any number of items up to max_batch_size).
def infer(x: np.ndarray, session: odk.TritonSession) -> np.ndarray:
    batch = session.spec.windows_per_request(session.cfg.batch_size)
    return odk.predict_batched(x[None, None], session.predictor(), batch)[0]


# 4. Post-processing: probabilities, the answer at the threshold.
def postprocess(scores: np.ndarray, model: Model) -> tuple[dict[str, float], str]:
    if model.logits:
        scores = np.exp(scores - scores.max())
        scores /= scores.sum()
    probabilities = {name: round(float(p), 6) for name, p in zip(model.labels, scores, strict=True)}
    return probabilities, model.labels[1 if probabilities[model.labels[1]] >= model.threshold else 0]


def segmentation_of(study: odk.Study, model: Model, prediction: str) -> tuple[dict[str, Any], list[str]]:
    """The segmentation operator's report on this study, when an input entry holds one: its volumes, and a
    warning when it disagrees with the prediction about the positive class (a class of the same name)."""
    path = study.companion(".json")
    if path is None:
        return {}, []
    try:
        report = odk.read_result(path)
    except (OSError, ValueError) as exc:
        return {}, [f"{path} is not a readable report ({exc}); not used"]
    if not isinstance(report, odk.LabelMapResult) or Path(report.input).name != study.src.name:
        return {}, [f"{path} is not a segmentation report of {study.src.name}; not used"]
    positive, found = model.labels[1], report.volumes_ml.get(model.labels[1])
    warnings = []
    if found is not None and (found > 0) != (prediction == positive):
        warnings.append(f"the segmentation found {found:.1f} mL of {positive} but the classifier says {prediction}")
    return {"report": str(path), "model": report.model.get("name", ""), "volumes_ml": report.volumes_ml}, warnings


# 5. What it writes: the report alone.
def write(study: odk.Study, result: ClassificationResult, timer: odk.Timer) -> ClassificationResult:
    report = study.output(".json")
    result.timings_s, result.outputs = timer.total(), {"report": report.name}
    with odk.StudyWriter() as writer:
        writer.add(report, result.dumps())
        writer.commit()
    return result


def process(study: odk.Study, session: odk.TritonSession, model: Model) -> ClassificationResult:
    """One study through the five steps."""
    timer = odk.Timer()
    with timer.stage("read"):
        vol, warnings = read(study, model, session.cfg)
    with timer.stage("preprocess"):
        x = preprocess(vol, model)
    with timer.stage("inference"):
        scores = infer(x, session)
    with timer.stage("postprocess"):
        probabilities, prediction = postprocess(scores, model)
        segmentation, disagreements = segmentation_of(study, model, prediction)
    spec = model.spec
    result = ClassificationResult.of(
        study, vol, prediction=prediction, probability=probabilities[model.labels[1]], threshold=model.threshold,
        probabilities=probabilities, segmentation=segmentation, transport=session.transport,
        warnings=warnings + disagreements, model={
            "name": spec.name, "version": spec.version, "resize_shape": list(model.shape),
            "hu_window": list(model.hu_window)})
    return write(study, result, timer)


if __name__ == "__main__":
    raise SystemExit(odk.main(odk.study_operator(process, prepare)))
