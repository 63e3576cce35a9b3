"""A model directory of a Triton repository, described the one way an operator describes a served model, and
the 3D segmentation pipeline the kit's tools run in-process (the benchmark's limit, the held-out evaluation).

The directory is read as Triton reads it (kit.triton.repository: config.pbtxt with Triton's schema, the
version policy), and described and checked by the operator library's own ``odk.build_spec`` and
``odk.WindowModel.of`` from the metadata Triton would report for it. :func:`segment` composes the library's
steps exactly as the segmentation operator (app/main.py) does, with the model called in-process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

import odk
from kit.triton.repository import TensorSpec, parse_config, read_model


@dataclass(frozen=True)
class LocalModel:
    spec: odk.ModelSpec  # what the operator would see through Triton
    window: odk.WindowModel
    model_dir: Path
    model_file: Path  # the served version's file (version policy applied)

    # What the 3D segmentation operator reads of its model.
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def input_name(self) -> str:
        return self.spec.input_name

    @property
    def output_name(self) -> str:
        return self.spec.output_name

    @property
    def max_batch_size(self) -> int:
        return self.spec.max_batch_size

    @property
    def roi(self) -> tuple[int, int, int]:
        r = self.window.roi
        return (r[0], r[1], r[2])

    @property
    def channels(self) -> int:
        return self.window.channels

    @property
    def labels(self) -> tuple[str, ...]:
        return self.window.labels

    @property
    def nested(self) -> bool:
        return self.window.nested

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        s = self.spec.floats("spacing_mm", 3)
        return (s[0], s[1], s[2])

    @property
    def hu_window(self) -> tuple[float, float]:
        w = self.spec.floats("hu_window", 2)
        return (w[0], w[1])

    def windows_per_request(self, requested: int = 0) -> int:
        return self.spec.windows_per_request(requested)


def _metadata(name: str, version: int, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]):
    """What Triton's model metadata says for a batching model (shapes with the batch dimension, -1)."""
    def tensors(specs: tuple[TensorSpec, ...]) -> list[SimpleNamespace]:
        return [SimpleNamespace(name=t.name, datatype=t.triton_dtype, shape=[-1, *t.dims]) for t in specs]

    return SimpleNamespace(name=name, versions=[str(version)], inputs=tensors(inputs), outputs=tensors(outputs))


def read_local_model(model_dir: Path | str, cfg: odk.OperatorConfig | None = None) -> LocalModel:
    """Describe ``<repository>/<name>`` as a 3D window model; ValueError (odk.ModelMismatch included) says what
    does not fit."""
    model_dir = Path(model_dir)
    served, problems = read_model(model_dir)
    if not served:
        raise ValueError("; ".join(map(str, problems)) or f"no servable model in {model_dir}")
    model = served[0]
    cfg = cfg or odk.OperatorConfig(model_name=model.name)
    metadata = _metadata(model.name, model.version, model.inputs, model.outputs)
    spec = odk.build_spec(metadata, parse_config(model_dir / "config.pbtxt"), cfg)
    local = LocalModel(spec=spec, window=odk.WindowModel.of(spec, ndim=3), model_dir=model_dir,
                       model_file=model.model_file)
    local.spacing_mm, local.hu_window  # noqa: B018  # both parameters present (ModelMismatch otherwise)
    return local


def segment(data: np.ndarray, affine: np.ndarray, model: LocalModel, predict: Callable[[np.ndarray], np.ndarray],
            cfg: odk.OperatorConfig, timer: odk.Timer | None = None) -> tuple[np.ndarray, odk.Geometry]:
    """The segmentation operator's model side (app/main.py: preprocess, infer, postprocess) with ``predict``
    in-process: the label map on the input's grid and the forward geometry."""
    timer = timer or odk.Timer()
    with timer.stage("preprocess"):
        grid, geom = odk.to_model_grid(data, affine, model.spacing_mm)
        grid = odk.hu_window(grid, *model.hu_window)
    with timer.stage("inference"):
        scores = odk.sliding_window(grid, predict, roi=model.roi, overlap=cfg.overlap,
                                    batch_size=model.windows_per_request(cfg.batch_size), blend=cfg.blend)
    del grid
    with timer.stage("postprocess"):
        labels = odk.argmax_labels(scores)
        del scores
        if cfg.largest_component and model.nested:
            labels = odk.keep_largest_component(labels)
        labels = odk.inverse_labels(labels, geom)
    return labels, geom
