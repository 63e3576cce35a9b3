"""The demo model's Triton repository entry: config.pbtxt (parsed with Triton's own protobuf) agrees with
the ONNX graph, and the graph runs in onnxruntime with the contract's shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "local" / "models" / "segmentation_liver_v1"
ONNX_TYPES = {mc.TYPE_FP32: onnx.TensorProto.FLOAT, mc.TYPE_FP16: onnx.TensorProto.FLOAT16,
              mc.TYPE_INT8: onnx.TensorProto.INT8, mc.TYPE_UINT8: onnx.TensorProto.UINT8}


@pytest.fixture(scope="module")
def config() -> mc.ModelConfig:
    return text_format.Parse((MODEL_DIR / "config.pbtxt").read_text(), mc.ModelConfig())


@pytest.fixture(scope="module")
def graph() -> onnx.GraphProto:
    model = onnx.load(str(MODEL_DIR / "1" / "model.onnx"))
    onnx.checker.check_model(model)
    return model.graph


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_config_is_a_standard_onnxruntime_entry(config: mc.ModelConfig) -> None:
    assert config.name == MODEL_DIR.name
    assert config.platform == "onnxruntime_onnx"
    assert 0 < config.max_batch_size <= 8
    assert not config.instance_group  # Triton picks GPU or CPU
    assert [p.name for p in MODEL_DIR.iterdir() if p.is_dir()] == ["1"]


def test_config_matches_onnx_graph(config: mc.ModelConfig, graph: onnx.GraphProto) -> None:
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    for declared, actual in ((config.input, inputs), (config.output, list(graph.output))):
        assert [t.name for t in declared] == [t.name for t in actual]
        for t, v in zip(declared, actual, strict=True):
            assert ONNX_TYPES[t.data_type] == v.type.tensor_type.elem_type, t.name
            dims = _dims(v)
            # max_batch_size > 0: config dims exclude the batch axis, which must be dynamic in the graph
            assert isinstance(dims[0], str) or dims[0] == 0, f"{t.name}: batch axis is fixed ({dims[0]})"
            assert list(t.dims) == dims[1:], t.name


def test_preprocessing_parameters_live_with_the_model(config: mc.ModelConfig) -> None:
    p = {k: v.string_value for k, v in config.parameters.items()}
    spacing = [float(v) for v in p["spacing_mm"].split(",")]
    lo, hi = (float(v) for v in p["hu_window"].split(","))
    assert len(spacing) == 3 and all(2.0 <= s <= 3.0 for s in spacing)
    assert lo < hi
    labels = p["labels"].split(",")
    assert labels == ["background", "liver", "lesion"] and config.output[0].dims[0] == len(labels)
    assert p["output_activation"] == "softmax" and p["axes"] == "RAS"
    assert list(config.input[0].dims) == [1, 96, 96, 96]


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_runs_with_dynamic_batch_and_outputs_probabilities(config: mc.ModelConfig, batch: int) -> None:
    sess = ort.InferenceSession(str(MODEL_DIR / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 1, size=(batch, *config.input[0].dims)).astype(np.float32)
    (y,) = sess.run([config.output[0].name], {config.input[0].name: x})
    assert y.shape == (batch, *config.output[0].dims) and y.dtype == np.float32
    assert np.allclose(y.sum(axis=1), 1.0, atol=1e-4) and y.min() >= 0.0
