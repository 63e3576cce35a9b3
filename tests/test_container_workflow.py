"""The container workflow for real: `make build`, `make wrap` onto a local inference-like base image, the
CPU Triton image under `make triton TRITON_MODE=container`, and `make run-local` in a container giving
the same label maps as `RUNTIME=host`. Each image is built once per session; every container is removed
at the end, also on failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from container_helpers import OPERATOR_IMAGE, OPERATOR_TAG, ROOT, check, make, output_of, python_base
from dicom_helpers import needs_tools, storescp, write_sample
from test_dicom_seg_register import check_seg

from kit.triton.readiness import free_ports

pytestmark = [pytest.mark.container, pytest.mark.slow]

OPERATOR = OPERATOR_IMAGE  # built by the session fixture operator_image (tests/conftest.py)
TAG = OPERATOR_TAG
WRAP_TAG = f"{OPERATOR_TAG}-wrap"
INFERENCE_BASE = "localhost/odk-inference-base:test"
SAMPLE = ROOT / "local" / "input"


def inspect(engine: str, ref: str, fmt: str) -> str:
    return check(subprocess.run([engine, "image", "inspect", "--format", fmt, ref], capture_output=True,
                                text=True, check=False)).stdout.strip()


@pytest.fixture(scope="session")
def wrapped_image(engine: str, pytestconfig: pytest.Config) -> str:
    check(_build_inference_base(pytestconfig))
    ref = f"{OPERATOR}:{WRAP_TAG}"
    check(make("wrap", pytestconfig, BASE_IMAGE=INFERENCE_BASE, IMAGE=OPERATOR, TAG=TAG,
               env={"WRAP_IMAGE": ref}))
    return ref


def _build_inference_base(config: pytest.Config) -> subprocess.CompletedProcess[str]:
    start = time.monotonic()
    result = subprocess.run(["tests/fake-inference-base/build.sh"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "FAKE_INFERENCE_IMAGE": INFERENCE_BASE}, timeout=600, check=False)
    with config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(f"\n$ tests/fake-inference-base/build.sh  ->  exit {result.returncode} "
              f"in {time.monotonic() - start:.1f} s")
    return result


@dataclass(frozen=True)
class TritonContainer:
    env: dict[str, str]  # what make run-local needs to find it (ODK_RUN_DIR)
    name: str
    grpc_port: int


@pytest.fixture(scope="session")
def triton_container(engine: str, triton_cpu_image: str, triton_models_dir: Path, pytestconfig: pytest.Config,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonContainer]:
    """`make triton TRITON_MODE=container` with the CPU Triton image, on free ports; always removed.

    The image runs as a non-root user, so the mounted repository must be world-readable: a copy is made
    (pytest's temporary folders are private to their owner)."""
    models = tmp_path_factory.mktemp("models-readable") / "models"
    shutil.copytree(triton_models_dir, models)
    for path in [models, *models.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    models.parent.chmod(0o755)
    http, grpc, metrics = free_ports(3)
    name = f"odk-triton-test-{os.getpid()}"
    env = {"ODK_RUN_DIR": str(tmp_path_factory.mktemp("triton-container-run")), "TRITON_CONTAINER": name,
           "TRITON_HTTP_PORT": str(http), "TRITON_GRPC_PORT": str(grpc), "TRITON_METRICS_PORT": str(metrics)}
    try:
        check(make("triton", pytestconfig, env=env, TRITON_MODE="container", TRITON_IMAGE=triton_cpu_image,
                   TRITON_GPUS="none", MODELS_DIR=str(models), TRITON_READY_TIMEOUT="180"))
        yield TritonContainer(env=env, name=name, grpc_port=grpc)
    finally:
        stopped = make("triton-stop", pytestconfig, env=env)
        subprocess.run([engine, "rm", "-f", name], capture_output=True, check=False)
        check(stopped)


@pytest.fixture(scope="session")
def host_output(triton_container: TritonContainer, pytestconfig: pytest.Config,
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: RUNTIME=host on the sample, against the containerised Triton."""
    out = tmp_path_factory.mktemp("run-local-host")
    check(make("run-local", pytestconfig, env=triton_container.env, RUNTIME="host", INPUT_DIR=str(SAMPLE),
               OUTPUT_DIR=str(out)))
    return out


def label_maps(folder: Path) -> dict[str, nib.Nifti1Image]:
    maps = {p.name: nib.load(p) for p in sorted(folder.glob("*_seg.nii.gz"))}
    assert maps, f"no label map in {folder}"
    return maps


def assert_same_label_maps(container_out: Path, host_out: Path) -> None:
    got, want = label_maps(container_out), label_maps(host_out)
    assert sorted(got) == sorted(want)
    for name, img in got.items():
        ref = want[name]
        a, b = np.asanyarray(img.dataobj), np.asanyarray(ref.dataobj)
        assert a.dtype == b.dtype == np.uint8, name
        assert a.shape == b.shape, name
        assert np.array_equal(a, b), f"{name}: {int((a != b).sum())} voxels differ from RUNTIME=host"
        assert np.array_equal(img.affine, ref.affine), name
        assert a.tobytes() == b.tobytes(), name
    for report in container_out.glob("*.json"):
        ours = json.loads(report.read_text())
        theirs = json.loads((host_out / report.name).read_text())
        for key in ("shape", "spacing_mm", "liver_volume_ml", "lesion_volume_ml", "labels", "model"):
            assert ours[key] == theirs[key], f"{report.name}: {key}"


def assert_owned_by_caller(folder: Path) -> None:
    for path in folder.iterdir():
        assert path.stat().st_uid == os.getuid(), f"{path} is owned by uid {path.stat().st_uid}"


def test_operator_image_labels_user_entrypoint(engine: str, operator_image: str) -> None:
    labels = json.loads(inspect(engine, operator_image, "{{json .Config.Labels}}"))
    assert labels["org.opencontainers.image.version"] == TAG
    assert labels["org.opencontainers.image.title"] == "simple-operator"
    assert labels["org.opencontainers.image.source"]
    assert inspect(engine, operator_image, "{{.Config.User}}") == "10001:10001"
    assert inspect(engine, operator_image, "{{json .Config.Entrypoint}}") in ("null", "[]")
    assert inspect(engine, operator_image, "{{json .Config.Cmd}}") == '["python","-u","-m","app"]'
    probe = check(subprocess.run(
        [engine, "run", "--rm", "--network", "none", "--entrypoint", "python", operator_image, "-c",
         "import sys, app, clara; print(sys.prefix, app.__file__)"],
        capture_output=True, text=True, timeout=120, check=False)).stdout
    # the operator runs from the installed distribution (pip install of the project), not from a copied tree
    assert probe.split() == ["/opt/venv", "/opt/venv/lib/python3.11/site-packages/app/__init__.py"]


def test_run_local_container_equals_host(engine: str, operator_image: str, triton_container: TritonContainer,
                                         host_output: Path, pytestconfig: pytest.Config, tmp_path: Path) -> None:
    """Container on the Triton container's network (odk-net) vs RUNTIME=host: the same label maps."""
    out = tmp_path / "out"
    result = check(make("run-local", pytestconfig, env=triton_container.env, RUNTIME="container",
                        IMAGE=OPERATOR, TAG=TAG, INPUT_DIR=str(SAMPLE), OUTPUT_DIR=str(out)))
    assert f"Triton {triton_container.name}:8001" in result.stderr, output_of(result)
    assert "payload:/input -> /output" in result.stdout + result.stderr, output_of(result)
    assert_same_label_maps(out, host_output)
    assert_owned_by_caller(out)


def test_run_local_container_with_embedded_triton(engine: str, operator_image: str, triton_server,
                                                  host_output: Path, pytestconfig: pytest.Config,
                                                  tmp_path: Path) -> None:
    """Triton embedded on this host: the container shares the host's network (and IPC, for shm)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "triton").symlink_to(triton_server.run_dir)
    out = tmp_path / "out"
    result = check(make("run-local", pytestconfig, env={"ODK_RUN_DIR": str(run_dir)}, RUNTIME="container",
                        IMAGE=OPERATOR, TAG=TAG, INPUT_DIR=str(SAMPLE), OUTPUT_DIR=str(out)))
    assert f"Triton {triton_server.grpc_url}" in result.stderr, output_of(result)
    assert_same_label_maps(out, host_output)
    assert_owned_by_caller(out)


def test_wrapped_image_runs_the_operator(engine: str, wrapped_image: str, triton_container: TritonContainer,
                                         host_output: Path, pytestconfig: pytest.Config, tmp_path: Path) -> None:
    """The operator wrapped onto the inference-like base (python3 without venv, its own PYTHONPATH with a
    module named numpy, its own entry point) processes the sample exactly like the host."""
    labels = json.loads(inspect(engine, wrapped_image, "{{json .Config.Labels}}"))
    assert labels["org.opencontainers.image.base.name"] == INFERENCE_BASE
    assert inspect(engine, wrapped_image, "{{json .Config.Entrypoint}}") in ("null", "[]")
    assert inspect(engine, wrapped_image, "{{json .Config.Cmd}}") == '["python","-u","-m","app"]'
    # `python` is the operator's venv; the base's python3 is untouched.
    pythons = check(subprocess.run(
        [engine, "run", "--rm", "--network", "none", wrapped_image, "sh", "-c",
         "python -c 'import sys, numpy; print(sys.prefix)'; python3 -c 'import sys; print(sys.prefix)'"],
        capture_output=True, text=True, timeout=60, check=False)).stdout.split()
    assert pythons == ["/opt/odk/venv", "/usr"]
    # The base had no venv module: the wrap installed python3-venv with apt-get.
    venv_in_base = subprocess.run([engine, "run", "--rm", "--network", "none", "--entrypoint", "python3",
                                   INFERENCE_BASE, "-m", "venv", "/tmp/v"], capture_output=True, timeout=60,
                                  check=False)
    assert venv_in_base.returncode != 0
    base_files = check(subprocess.run([engine, "run", "--rm", "--network", "none", "--entrypoint", "ls",
                                       wrapped_image, "/opt/inference"], capture_output=True, text=True,
                                      timeout=60, check=False)).stdout.split()
    assert "serve.py" in base_files
    out = tmp_path / "out"
    check(make("run-local", pytestconfig, env=triton_container.env, RUNTIME="container", IMAGE=OPERATOR,
               TAG=WRAP_TAG, INPUT_DIR=str(SAMPLE), OUTPUT_DIR=str(out)))
    assert_same_label_maps(out, host_output)


def test_triton_cpu_image_is_a_drop_in(engine: str, triton_container: TritonContainer) -> None:
    """The containerised Triton answers standard Triton gRPC on its published port."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{triton_container.grpc_port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("segmentation_liver_v1")
    # The demo model's config.pbtxt asks for OpenVINO: the image has it, as the host's embedded server.
    config = client.get_model_config("segmentation_liver_v1").config
    assert config.parameters["odk_engine"].string_value == "openvino"
    state = subprocess.run([engine, "inspect", "-f", "{{.State.Running}} {{.Config.User}}", triton_container.name],
                           capture_output=True, text=True, check=True).stdout.split()
    assert state == ["true", "10002:10002"]


def test_setup_podman_is_quick_when_done(engine: str) -> None:
    if engine != "podman":
        pytest.skip("the engine here is docker; scripts/setup-podman.sh is for machines without one")
    start = time.monotonic()
    result = check(subprocess.run(["scripts/setup-podman.sh"], cwd=ROOT, capture_output=True, text=True,
                                  timeout=120, check=False))
    assert "nothing to do" in result.stderr, output_of(result)
    assert time.monotonic() - start < 10


def test_wrap_on_a_base_without_python_or_apt_fails_clearly(engine: str, tmp_path: Path) -> None:
    """A base with no usable python3 and no apt-get: the wrap stops at once and says what the base needs."""
    bare = "localhost/odk-bare-base:test"
    (tmp_path / "Dockerfile").write_text(
        f"FROM {python_base(engine)}\n"
        "RUN rm -f /usr/bin/apt-get /usr/bin/python3 /usr/bin/python3.11\n")
    check(subprocess.run([engine, "build", "-q", "-t", bare, str(tmp_path)], capture_output=True, text=True,
                         timeout=300, check=False))
    result = make("wrap", BASE_IMAGE=bare, env={"WRAP_IMAGE": "localhost/odk-test-operator:never"})
    assert result.returncode != 0, output_of(result)
    assert "error: BASE_IMAGE needs python3 >= 3.11 with a working venv module, or apt-get" in result.stdout + \
        result.stderr, output_of(result)
    assert "[odk] error: wrapping the operator onto localhost/odk-bare-base:test" in result.stderr


@needs_tools
def test_dicom_pipeline_in_containers(engine: str, operator_image: str, triton_server, tmp_path: Path) -> None:
    """def/liver-dicom-pipeline.yml with every operator in the operator image (make run-pipeline RUNTIME=container):
    the DICOM operators run from the installed distribution, the SEG equals the label map and reaches a real
    storescp on this host."""
    name, tag = operator_image.rsplit(":", 1)
    text = (ROOT / "def" / "liver-dicom-pipeline.yml").read_text()
    pipeline = tmp_path / "liver-dicom-pipeline.yml"
    pipeline.write_text(text.replace("image: clara/simple-operator", f"image: {name}").replace("tag: 0.1.0",
                                                                                               f"tag: {tag}"))
    write_sample(tmp_path / "input" / "CT")
    out, received = tmp_path / "out", tmp_path / "received"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVIDIA_", "TRITON_", "DICOM_", "ODK_"))}
    env.update({"NVIDIA_TRITON_GRPCURI": triton_server.grpc_url, "ODK_RUN_DIR": str(tmp_path / "run")})
    with storescp(received, "PACS") as port:
        proc = subprocess.run(
            [sys.executable, "-m", "kit.pipeline.run", str(pipeline), "--input-dir", str(tmp_path / "input"),
             "--output-dir", str(out), "--runtime", "container", "--engine", engine, "--job-name", "dicom-ctr",
             "--param", f"DICOM_DESTINATION=PACS@127.0.0.1:{port}"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=900)
    log = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, log
    assert "runtime container" in proc.stderr, log
    (sidecar,) = (out / "dicom-reader" / "volumes").glob("*.dicom.json")
    stem = sidecar.name[: -len(".dicom.json")]
    seg_path = out / "dicom-seg-writer" / "seg" / f"{stem}_seg.dcm"
    check_seg(seg_path, sidecar, out / "segmentation" / "segmentation" / f"{stem}_seg.nii.gz")
    (got,) = received.iterdir()
    assert pydicom.dcmread(got).SOPInstanceUID == pydicom.dcmread(seg_path).SOPInstanceUID
    assert_owned_by_caller(out)
