"""The benchmarked model as the limit and the peer see it (from config.pbtxt, like the operator sees it
through Triton), the onnxruntime session they share, and a trivial model for timing the transport alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from app.config import number_list
from kit.triton.repository import read_model

IDENTITY_NAME = "bench_identity"


@dataclass(frozen=True)
class BenchModel:
    name: str
    model_dir: Path
    onnx_file: Path
    input_name: str
    output_name: str
    roi: tuple[int, int, int]
    channels: int
    max_batch_size: int
    spacing_mm: tuple[float, float, float]
    hu_window: tuple[float, float]


def _floats(spec, key: str, n: int) -> tuple[float, ...]:
    values = number_list(spec.parameters.get(key, ""))
    if len(values) != n:
        raise ValueError(f"model {spec.name}: config.pbtxt parameter {key} is missing or not {n} comma-separated"
                         " numbers; fix the model's config.pbtxt")
    return values


def load_model(model_dir: Path) -> BenchModel:
    """Describe the model at ``<repository>/<name>`` from its config.pbtxt (parameters included)."""
    specs, problems = read_model(Path(model_dir))
    if not specs:
        raise ValueError("; ".join(map(str, problems)) or f"no servable model in {model_dir}")
    spec = specs[0]
    tin, tout = spec.inputs[0], spec.outputs[0]
    sp = _floats(spec, "spacing_mm", 3)
    hu = _floats(spec, "hu_window", 2)
    return BenchModel(name=spec.name, model_dir=Path(model_dir), onnx_file=spec.model_file,
                      input_name=tin.name, output_name=tout.name,
                      roi=(tin.dims[1], tin.dims[2], tin.dims[3]), channels=tout.dims[0],
                      max_batch_size=max(1, spec.max_batch_size), spacing_mm=(sp[0], sp[1], sp[2]),
                      hu_window=(hu[0], hu[1]))


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def ort_session(onnx_file: Path):
    """The session the embedded Triton builds for the same model: CPU, all cores, full graph optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = cpu_cores()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(onnx_file), sess_options=options, providers=["CPUExecutionProvider"])


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
