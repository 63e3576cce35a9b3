"""One study, end to end: read -> canonical -> model spacing -> window -> Triton -> blend -> invert -> write."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from nibabel import orientations

from . import guards, overlay, postprocess, transforms
from .config import OperatorConfig
from .model import ModelSpec
from .niftiio import Volume, label_bytes, read_volume, stem
from .outputs import StudyWriter
from .sliding import sliding_window

log = logging.getLogger("app")
Predict = Callable[[np.ndarray], np.ndarray]


@dataclass
class Timer:
    stages: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = round(self.stages.get(name, 0.0) + time.perf_counter() - t0, 4)


@dataclass(frozen=True)
class StudyOutputs:
    seg: Path
    overlay: Path
    report: Path

    @classmethod
    def for_input(cls, out_dir: Path, name: str) -> StudyOutputs:
        return cls(seg=out_dir / f"{name}_seg.nii.gz", overlay=out_dir / f"{name}_overlay.png",
                   report=out_dir / f"{name}.json")


def segment(data: np.ndarray, affine: np.ndarray, spec: ModelSpec, predict: Predict, cfg: OperatorConfig,
            timer: Timer | None = None) -> tuple[np.ndarray, transforms.Geometry]:
    """The model-side pipeline: returns the label map on the input's grid and the forward geometry."""
    timer = timer or Timer()
    with timer.stage("preprocess"):
        model_vol, geom = transforms.forward(data, affine, spec.spacing_mm, spec.hu_window)
    batch = spec.windows_per_request(cfg.batch_size)
    with timer.stage("inference"):
        scores = sliding_window(model_vol, predict, roi=spec.roi, overlap=cfg.overlap, batch_size=batch,
                                blend=cfg.blend)
    del model_vol
    with timer.stage("postprocess"):
        labels = postprocess.argmax_labels(scores)
        del scores
        if cfg.largest_component and spec.nested:
            labels = postprocess.keep_largest_organ(labels)
        labels = transforms.inverse_labels(labels, geom)
    return labels, geom


def class_volumes(names: tuple[str, ...], volumes: list[float], nested: bool = True) -> dict[str, float]:
    """``<name>_volume_ml`` for each foreground class of the model. Nested (the model's label_nesting organ),
    the first foreground class is the organ, which holds the classes after it: its volume includes theirs. For
    the demo model: liver_volume_ml (lesions included) and lesion_volume_ml. Not nested, each class its own."""
    if not nested:
        return {f"{name}_volume_ml": volumes[i] for i, name in enumerate(names) if i >= 1}
    out = {f"{names[1]}_volume_ml": sum(volumes[1:])} if len(names) > 1 else {}
    out.update({f"{name}_volume_ml": volumes[i] for i, name in enumerate(names) if i >= 2})
    return out


def build_report(src: Path, vol: Volume, labels: np.ndarray, spec: ModelSpec, transport: str,
                 timer: Timer, outputs: StudyOutputs, warnings: list[str] | None = None) -> dict:
    counts = postprocess.label_counts(labels, len(spec.labels))
    volumes = postprocess.volumes_ml(counts, vol.spacing)
    by_name = {name: {"label": i, "voxels": counts[i], "volume_ml": volumes[i]}
               for i, name in enumerate(spec.labels)}
    return {
        "input": str(src),
        "shape": list(vol.data.shape),
        "spacing_mm": [round(s, 6) for s in vol.spacing],
        "dtype": str(vol.data.dtype),
        "orientation": "".join(orientations.aff2axcodes(vol.affine)),
        **class_volumes(spec.labels, volumes, spec.nested),
        "labels": by_name,
        "model": {"name": spec.name, "version": spec.version, "spacing_mm": list(spec.spacing_mm),
                  "hu_window": list(spec.hu_window), "roi": list(spec.roi),
                  "label_nesting": "organ" if spec.nested else "none"},
        "transport": transport,
        "timings_s": dict(timer.stages),
        "warnings": list(warnings or []),
        "outputs": {"segmentation": outputs.seg.name, "overlay": outputs.overlay.name,
                    "report": outputs.report.name},
    }


def check_study(vol: Volume, spec: ModelSpec, cfg: OperatorConfig) -> list[str]:
    """Refuse (StudyError) what cannot give a right answer; return doubts about what can."""
    guards.check_finite(vol.data)
    ornt = transforms.canonical_ornt(vol.affine)
    c_spacing = transforms.canonical_spacing(transforms.voxel_spacing(vol.affine), ornt)
    c_shape = transforms.to_canonical(vol.data, ornt).shape
    model_shape = transforms.resampled_shape((c_shape[0], c_shape[1], c_shape[2]), c_spacing, spec.spacing_mm)
    shape = vol.data.shape
    guards.check_working_memory((shape[0], shape[1], shape[2]), vol.data.dtype.itemsize, model_shape,
                                spec.channels, cfg.max_memory_mb)
    return guards.ct_warnings(float(vol.data.min()), float(vol.data.max()), vol.data.dtype)


def process_study(src: Path, out_dir: Path, spec: ModelSpec, predict: Predict, cfg: OperatorConfig,
                  transport: str) -> dict:
    """Process one NIfTI file into ``out_dir``; raises StudyError (or others) on failure.

    The segmentation, overlay and report are committed together: all of them appear, or none.
    """
    timer = Timer()
    t0 = time.perf_counter()
    outputs = StudyOutputs.for_input(out_dir, stem(src))
    with timer.stage("read"):
        vol = read_volume(src, cfg.max_voxels, cfg.max_memory_mb)
        warnings = check_study(vol, spec, cfg)
    labels, geom = segment(vol.data, vol.affine, spec, predict, cfg, timer)
    with StudyWriter() as writer:
        with timer.stage("write"):
            writer.add(outputs.seg, label_bytes(labels, vol, spec.labels, outputs.seg.name.endswith(".gz")))
        if cfg.overlay:
            with timer.stage("overlay"):
                ct_ras = transforms.to_canonical(vol.data, geom.ornt)
                lab_ras = transforms.to_canonical(labels, geom.ornt)
                png = overlay.render(ct_ras, lab_ras, geom.canonical_spacing, title=f"{src.name}  {spec.name}",
                                     names=spec.labels[1:])
                writer.add(outputs.overlay, png)
        timer.stages["total"] = round(time.perf_counter() - t0, 4)
        report = build_report(src, vol, labels, spec, transport, timer, outputs, warnings)
        if spec.nested:
            organ = spec.labels[1]
            report["warnings"] += guards.organ_warnings(organ, report[f"{organ}_volume_ml"])
        else:  # separate structures: only a study with none of them is suspicious
            report["warnings"] += guards.organ_warnings(
                " or ".join(spec.labels[1:]), sum(report[f"{n}_volume_ml"] for n in spec.labels[1:]))
        writer.add(outputs.report, (json.dumps(report, indent=2) + "\n").encode())
        writer.commit()
    return report
