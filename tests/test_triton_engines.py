"""The embedded Triton's engines: config.pbtxt's OpenVINO CPU accelerator line switches a model from onnxruntime
to OpenVINO; both serve the demo model with the same labels through gRPC and system shared memory; a model
OpenVINO cannot compile falls back to onnxruntime with one warning line naming it.

One real embedded Triton on free ports serves a temporary repository: the demo model with the line, a copy
without it, and a model of an onnxruntime contrib op OpenVINO has no conversion for, with the line.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from onnx import TensorProto, helper

from kit.triton.onnx_engine import ENGINE_PARAMETER, OPENVINO, requested_engine
from kit.triton.readiness import free_ports
from kit.triton.reap import unregister
from kit.triton.state import LOG_FILE, Ports

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "local" / "models" / "segmentation_liver_v1"
SAMPLE = ROOT / "local" / "input" / "synthetic_phantom_001.nii.gz"
OV_MODEL, ORT_MODEL, BROKEN = "liver_openvino", "liver_onnxruntime", "inverse_openvino"
LINE = 'optimization { execution_accelerators { cpu_execution_accelerator : [ { name : "openvino" } ] } }\n'

pytestmark = pytest.mark.skipif(not (DEMO / "1" / "model.onnx").is_file(), reason="the demo model is not exported")


def _copy_demo(repo: Path, name: str, openvino: bool) -> None:
    target = repo / name
    shutil.copytree(DEMO, target, ignore=shutil.ignore_patterns("*.md", "*.json"))
    text = (target / "config.pbtxt").read_text().replace('name: "segmentation_liver_v1"', f'name: "{name}"')
    start = text.find("optimization {")
    if start >= 0:  # the demo's own line, removed: depth-counted to the block's closing brace
        depth, end = 0, start
        for end in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if text[end] == "}" and depth == 0:
                break
        text = text[:start] + text[end + 1:].lstrip("\n")
    (target / "config.pbtxt").write_text(text + (LINE if openvino else ""))


def _write_inverse_model(repo: Path) -> None:
    """com.microsoft::Inverse: onnxruntime runs it, OpenVINO's ONNX frontend has no conversion rule for it."""
    graph = helper.make_graph(
        [helper.make_node("Inverse", ["X"], ["Y"], domain="com.microsoft")], BROKEN,
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 4, 4])])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    (repo / BROKEN / "1").mkdir(parents=True)
    onnx.save(model, str(repo / BROKEN / "1" / "model.onnx"))
    (repo / BROKEN / "config.pbtxt").write_text(
        f'name: "{BROKEN}"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 2\n'
        'input [ { name: "X" data_type: TYPE_FP32 dims: [ 4, 4 ] } ]\n'
        'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 4, 4 ] } ]\n' + LINE)


@dataclass(frozen=True)
class Server:
    grpc_url: str
    run_dir: Path
    log: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from kit.triton.embedded import start, stop

    repo = tmp_path_factory.mktemp("engines-models")
    _copy_demo(repo, OV_MODEL, openvino=True)
    _copy_demo(repo, ORT_MODEL, openvino=False)
    _write_inverse_model(repo)
    run_dir = tmp_path_factory.mktemp("engines-run")
    try:
        handle = start(repo, Ports(*free_ports(3)), run_dir, timeout=240)
        yield Server(handle.grpc_url, run_dir, (run_dir / LOG_FILE).read_text())
    finally:
        stop(run_dir)


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(server.grpc_url)
    yield c
    c.close()


def _sample_windows() -> np.ndarray:
    """Two 96^3 windows of the sample CT (liver and lesions in them), HU-windowed as the operator does."""
    ct = np.asarray(nib.load(str(SAMPLE)).dataobj, dtype=np.float32)
    ct = np.clip((ct + 200.0) / 500.0, 0.0, 1.0)
    z = np.pad(ct, ((0, 0), (0, 0), (16, 16)), mode="edge")  # 64 slices -> 96
    windows = [z[96:192, 96:192, :], z[160:256, 112:208, :]]
    return np.stack(windows)[:, None].astype(np.float32)


def _infer_grpc(client, model: str, x: np.ndarray) -> np.ndarray:
    inp = grpcclient.InferInput("NV_MODEL_INPUT", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer(model, [inp], outputs=[grpcclient.InferRequestedOutput("NV_MODEL_OUTPUT")])
    return result.as_numpy("NV_MODEL_OUTPUT")


def _infer_shm(client, model: str, x: np.ndarray, server_url: str) -> np.ndarray:
    out_shape = [x.shape[0], 3, *x.shape[2:]]
    out_bytes = int(np.prod(out_shape)) * 4
    prefix = f"engines_{uuid.uuid4().hex[:8]}_"
    regions = {"in": (f"{prefix}in", f"/odk_test_{prefix}in", x.nbytes),
               "out": (f"{prefix}out", f"/odk_test_{prefix}out", out_bytes)}
    handles = {k: shm.create_shared_memory_region(*v) for k, v in regions.items()}
    try:
        shm.set_shared_memory_region(handles["in"], [x])
        for name, key, size in regions.values():
            client.register_system_shared_memory(name, key, size)
        inp = grpcclient.InferInput("NV_MODEL_INPUT", list(x.shape), "FP32")
        inp.set_shared_memory(regions["in"][0], x.nbytes)
        out = grpcclient.InferRequestedOutput("NV_MODEL_OUTPUT")
        out.set_shared_memory(regions["out"][0], out_bytes)
        client.infer(model, [inp], outputs=[out])
        return shm.get_contents_as_numpy(handles["out"], np.float32, out_shape).copy()
    finally:
        # As the operator's clean-up does: the server may hold a region for a moment after answering
        # ("currently in use"), so unregistering is retried.
        unregister(server_url, prefix)
        for handle in handles.values():
            shm.destroy_shared_memory_region(handle)


def test_the_demo_config_asks_for_openvino() -> None:
    from odk import parse_config

    assert requested_engine(parse_config(DEMO / "config.pbtxt")) == OPENVINO


def test_the_config_line_switches_the_engine(client, server: Server) -> None:
    engines = {m: client.get_model_config(m).config.parameters[ENGINE_PARAMETER].string_value
               for m in (OV_MODEL, ORT_MODEL, BROKEN)}
    assert engines == {OV_MODEL: "openvino", ORT_MODEL: "onnxruntime", BROKEN: "onnxruntime"}
    assert f"serving {OV_MODEL} version 1" in server.log and "with openvino on CPU" in server.log
    status = subprocess.run([sys.executable, "-m", "kit.triton", "status", "--run-dir", str(server.run_dir)],
                            capture_output=True, text=True, check=False, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    for model, engine in engines.items():
        assert f"{model} v1: ready (engine {engine})" in status.stdout, status.stdout


@pytest.mark.parametrize("transport", ["grpc", "shm"])
def test_both_engines_give_the_same_labels(client, server: Server, transport: str) -> None:
    x = _sample_windows()
    if transport == "grpc":
        with_ov, with_ort = _infer_grpc(client, OV_MODEL, x), _infer_grpc(client, ORT_MODEL, x)
    else:
        with_ov, with_ort = (_infer_shm(client, OV_MODEL, x, server.grpc_url),
                             _infer_shm(client, ORT_MODEL, x, server.grpc_url))
    assert with_ov.shape == with_ort.shape == (2, 3, 96, 96, 96)
    labels = with_ort.argmax(axis=1)
    assert (labels > 0).mean() > 0.05, "the windows hold liver"
    diff = float(np.abs(with_ov - with_ort).max())
    assert diff < 1e-4, f"outputs differ by up to {diff:.2e} through {transport}"
    # Equal labels, except where onnxruntime's top two classes are within the engines' difference of each
    # other (a tie either engine may break either way: 6 of the 1.8 million voxels here are within 1e-5).
    top2 = np.sort(with_ort, axis=1)[:, -2:]
    tie = (top2[:, 1] - top2[:, 0]) <= 2 * diff
    differ = with_ov.argmax(axis=1) != labels
    assert not (differ & ~tie).any(), (f"{int((differ & ~tie).sum())} voxels differ beyond ties (max diff "
                                       f"{diff:.2e}, {int(differ.sum())} in all) through {transport}")
    assert differ.sum() <= 10, f"{int(differ.sum())} tied voxels differ through {transport}"


def test_a_model_openvino_cannot_compile_falls_back_with_one_warning(client, server: Server) -> None:
    warnings = [line for line in server.log.splitlines() if "WARNING" in line and "OpenVINO" in line]
    assert len(warnings) == 1, server.log
    assert BROKEN in warnings[0] and "com.microsoft.Inverse" in warnings[0] and "onnxruntime" in warnings[0]
    m = np.array([[[2, 0, 0, 0], [0, 4, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0.5]]], dtype=np.float32)
    inp = grpcclient.InferInput("X", list(m.shape), "FP32")
    inp.set_data_from_numpy(m)
    got = client.infer(BROKEN, [inp]).as_numpy("Y")
    np.testing.assert_allclose(got, np.linalg.inv(m), rtol=1e-6)
