"""The benchmarked model as the limit and the peer see it (from config.pbtxt, like the operator sees it
through Triton), the onnxruntime session they share, and a trivial model for timing the transport alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from kit.local_model import LocalModel, read_local_model
from kit.triton.onnx_model import cpu_threads, open_session

IDENTITY_NAME = "bench_identity"


@dataclass(frozen=True)
class BenchModel:
    """The benchmarked model: the operator's own description of it (``spec``) and its files."""

    spec: LocalModel
    model_dir: Path
    onnx_file: Path

    def __getattr__(self, attr: str) -> object:
        """The spec's fields (name, input_name, output_name, roi, channels, max_batch_size, spacing_mm,
        hu_window, labels) read as the model's own."""
        if attr == "spec":  # not set yet (copy/pickle): no recursion
            raise AttributeError(attr)
        return getattr(self.spec, attr)


def load_model(model_dir: Path) -> BenchModel:
    """Describe the model at ``<repository>/<name>`` as the operator would see it served (kit.local_model)."""
    local = read_local_model(model_dir)
    return BenchModel(spec=local, model_dir=Path(model_dir), onnx_file=local.model_file)


def ort_session(onnx_file: Path):
    """The session the embedded Triton builds for the same model (kit.triton.onnx_model), on all cores."""
    return open_session(onnx_file, cpu_threads())


def engine_runner(onnx_file: Path, engine: str):
    """The runner the embedded Triton builds for the same model with ``engine`` (kit.triton.onnx_engine: the same
    options), on all cores; ``run(output_names, feed)`` like an onnxruntime session."""
    from kit.triton.onnx_engine import ONNXRUNTIME, OPENVINO, OpenVinoOptions, OpenVinoRunner, OrtRunner

    if engine == OPENVINO:
        return OpenVinoRunner(onnx_file, OpenVinoOptions(threads=cpu_threads()))
    if engine == ONNXRUNTIME:
        return OrtRunner(onnx_file, cpu_threads())
    raise ValueError(f"unknown engine {engine!r}; expected {ONNXRUNTIME} or {OPENVINO}")


def write_identity_model(repo: Path, model: BenchModel) -> Path:
    """A model with the same signature whose output is its input repeated per class: no compute, so a
    round trip through Triton with it is the window traffic (transport + serving overhead) alone."""
    x, y = model.input_name, model.output_name
    graph = helper.make_graph(
        nodes=[helper.make_node("Concat", [x] * model.channels, [y], axis=1)],
        name=IDENTITY_NAME,
        inputs=[helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", 1, *model.roi])],
        outputs=[helper.make_tensor_value_info(y, TensorProto.FLOAT, ["N", model.channels, *model.roi])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    target = repo / IDENTITY_NAME
    (target / "1").mkdir(parents=True, exist_ok=True)
    dims_in = ", ".join(str(d) for d in (1, *model.roi))
    dims_out = ", ".join(str(d) for d in (model.channels, *model.roi))
    (target / "config.pbtxt").write_text(
        f'name: "{IDENTITY_NAME}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: {model.max_batch_size}\n'
        f'input [ {{ name: "{x}" data_type: TYPE_FP32 dims: [ {dims_in} ] }} ]\n'
        f'output [ {{ name: "{y}" data_type: TYPE_FP32 dims: [ {dims_out} ] }} ]\n'
        f'parameters {{ key: "spacing_mm" value: {{ string_value: "{",".join(map(str, model.spacing_mm))}" }} }}\n'
        f'parameters {{ key: "hu_window" value: {{ string_value: "{",".join(map(str, model.hu_window))}" }} }}\n')
    onnx.save(proto, str(target / "1" / "model.onnx"))
    return target


def window_batch(model: BenchModel, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, *model.roi), dtype=np.float32)
