"""The embedded Triton, talked to with tritonclient as the operator does (one real server per session)."""

from __future__ import annotations

import uuid

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from kit.triton.readiness import http_ok, readiness


@pytest.fixture(scope="module")
def client(triton_server):
    c = grpcclient.InferenceServerClient(triton_server.grpc_url)
    yield c
    c.close()


@pytest.fixture(scope="module")
def pbtxt(triton_server) -> mc.ModelConfig:
    path = triton_server.models_dir / triton_server.model_name / "config.pbtxt"
    return text_format.Parse(path.read_text(), mc.ModelConfig())


@pytest.fixture(scope="module")
def reference(triton_server):
    """The same ONNX file run in-process by onnxruntime."""
    return ort.InferenceSession(str(triton_server.models_dir / triton_server.model_name / "1" / "model.onnx"),
                                providers=["CPUExecutionProvider"])


def _window(pbtxt: mc.ModelConfig, batch: int, seed: int) -> np.ndarray:
    dims = list(pbtxt.input[0].dims)
    return np.random.default_rng(seed).random((batch, *dims), dtype=np.float32)


def test_server_metadata_is_a_real_triton(client):
    meta = client.get_server_metadata()
    assert meta.name == "triton"
    assert meta.version.startswith("2.")
    assert {"system_shared_memory", "model_configuration", "binary_tensor_data"} <= set(meta.extensions)
    assert client.is_server_live() and client.is_server_ready()


def test_model_metadata_matches_config_pbtxt(client, triton_server, pbtxt):
    meta = client.get_model_metadata(triton_server.model_name)
    assert meta.name == triton_server.model_name
    assert "1" in meta.versions
    batch = [-1] if pbtxt.max_batch_size > 0 else []
    for served, declared in ((meta.inputs, pbtxt.input), (meta.outputs, pbtxt.output)):
        assert [t.name for t in served] == [t.name for t in declared]
        assert [t.datatype for t in served] == [mc.DataType.Name(t.data_type)[5:] for t in declared]
        assert [list(t.shape) for t in served] == [batch + list(t.dims) for t in declared]


def test_model_config_matches_config_pbtxt_including_parameters(client, triton_server, pbtxt):
    served = client.get_model_config(triton_server.model_name).config
    assert served.name == pbtxt.name
    assert served.max_batch_size == pbtxt.max_batch_size
    for got, want in ((served.input, pbtxt.input), (served.output, pbtxt.output)):
        assert [(t.name, t.data_type, list(t.dims)) for t in got] == \
               [(t.name, t.data_type, list(t.dims)) for t in want]
    assert pbtxt.parameters, "the demo model contract declares parameters"
    for key, value in pbtxt.parameters.items():
        assert served.parameters[key].string_value == value.string_value, key


def test_infer_one_window_equals_onnxruntime(client, triton_server, pbtxt, reference):
    x = _window(pbtxt, 1, seed=1)
    inp = grpcclient.InferInput(pbtxt.input[0].name, list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    out_name = pbtxt.output[0].name
    result = client.infer(triton_server.model_name, [inp], outputs=[grpcclient.InferRequestedOutput(out_name)])
    got = result.as_numpy(out_name)
    want = reference.run([out_name], {pbtxt.input[0].name: x})[0]
    assert got.shape == want.shape == (1, *pbtxt.output[0].dims)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_batch_through_system_shared_memory_equals_onnxruntime(client, triton_server, pbtxt, reference):
    """The operator's path: windows in and probabilities out through client system shared memory."""
    x = _window(pbtxt, 2, seed=2)
    out_shape = [2, *pbtxt.output[0].dims]
    out_bytes = int(np.prod(out_shape)) * 4
    tag = uuid.uuid4().hex[:8]
    regions = {
        "in": (f"in_{tag}", f"/odk_test_in_{tag}", x.nbytes),
        "out": (f"out_{tag}", f"/odk_test_out_{tag}", out_bytes),
    }
    handles = {k: shm.create_shared_memory_region(*v) for k, v in regions.items()}
    try:
        shm.set_shared_memory_region(handles["in"], [x])
        for name, key, size in regions.values():
            client.register_system_shared_memory(name, key, size)
        inp = grpcclient.InferInput(pbtxt.input[0].name, list(x.shape), "FP32")
        inp.set_shared_memory(regions["in"][0], x.nbytes)
        out = grpcclient.InferRequestedOutput(pbtxt.output[0].name)
        out.set_shared_memory(regions["out"][0], out_bytes)
        result = client.infer(triton_server.model_name, [inp], outputs=[out])
        assert list(result.get_output(pbtxt.output[0].name).shape) == out_shape
        got = shm.get_contents_as_numpy(handles["out"], np.float32, out_shape)
        want = reference.run(None, {pbtxt.input[0].name: x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    finally:
        for name, _, _ in regions.values():
            client.unregister_system_shared_memory(name)
        for handle in handles.values():
            shm.destroy_shared_memory_region(handle)


def test_http_health_and_metrics_endpoints(triton_server):
    state = readiness(triton_server.http_url, [(triton_server.model_name, 1)])
    assert state == {"server": True, triton_server.model_name: True}
    assert not readiness(triton_server.http_url, [("no_such_model", None)])["no_such_model"]
    assert http_ok(triton_server.metrics_url)


def test_model_repository_api_is_not_open_to_clients(client, triton_server):
    """Loading/unloading stays behind the server's private token; inference and shm stay open."""
    with pytest.raises(InferenceServerException, match=r"(?i)permission|denied|unauthori|restricted"):
        client.unload_model(triton_server.model_name)
    assert client.is_model_ready(triton_server.model_name)
