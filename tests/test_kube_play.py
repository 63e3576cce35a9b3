"""`make run-pipeline RUNTIME=kube`: the rendered container specs played with `podman kube play` (the CPU
Triton image, then each operator's pod) give the outputs of RUNTIME=host on the sample, file for file, and
leave no pod, volume or network behind."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
import pytest
from container_helpers import ROOT, check, make, one_error_line
from requires import requires

from kit.pipeline.model import load_pipeline

if TYPE_CHECKING:
    from conftest import TritonServer

pytestmark = [pytest.mark.container, pytest.mark.slow]

SAMPLE = ROOT / "local" / "input"
# What may differ between the runs: where the input was seen, how Triton was reached, how long it took.
REPORT_VOLATILE = {"input", "transport", "timings_s"}
SUMMARY_VOLATILE = {"job", "inputs"}


def podman_names(kind: str) -> set[str]:
    out = subprocess.run(["podman", kind, "ls", "--format", "{{.Name}}"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def played_order(stderr: str) -> list[str]:
    """What the run says it started, in order: "triton" when Triton's pod is ready, then each operator as
    its pod is played ("[odk] <operator>: podman kube play <file>")."""
    order = []
    for line in stderr.splitlines():
        if re.match(r"\[odk\] Triton pod triton-\S+ ready in ", line):
            order.append("triton")
        elif m := re.match(r"\[odk\] (\S+): podman kube play \S+\.yaml$", line):
            order.append(m[1])
    return order


def without(data: Any, volatile: set[str]) -> Any:
    return {k: v for k, v in data.items() if k not in volatile}


def assert_same_outputs(kube: Path, host: Path) -> None:
    files = sorted(p.relative_to(kube) for p in kube.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(host) for p in host.rglob("*") if p.is_file())
    for rel in files:
        a, b = kube / rel, host / rel
        if rel.name.endswith(".nii.gz"):
            ia, ib = nib.load(a), nib.load(b)
            assert ia.get_data_dtype() == ib.get_data_dtype() == np.uint8, rel
            assert np.array_equal(np.asarray(ia.dataobj), np.asarray(ib.dataobj)), f"{rel}: label maps differ"
            assert np.array_equal(ia.affine, ib.affine), rel
        elif rel.name == "summary.json":
            assert without(json.loads(a.read_text()), SUMMARY_VOLATILE) == \
                without(json.loads(b.read_text()), SUMMARY_VOLATILE), rel
        elif rel.suffix == ".json":
            assert without(json.loads(a.read_text()), REPORT_VOLATILE) == \
                without(json.loads(b.read_text()), REPORT_VOLATILE), rel
        else:  # overlay PNGs, summary.csv
            assert a.read_bytes() == b.read_bytes(), f"{rel} differs"


@pytest.fixture
def pipeline(operator_image: str, tmp_path: Path) -> Path:
    """def/two-operator-pipeline.yml with the operator image the session built."""
    name, tag = operator_image.rsplit(":", 1)
    text = (ROOT / "def" / "two-operator-pipeline.yml").read_text()
    path = tmp_path / "two-operator-pipeline.yml"
    path.write_text(text.replace("image: clara/simple-operator", f"image: {name}").replace("tag: 0.1.0", f"tag: {tag}"))
    return path


@pytest.fixture
def readable_models(triton_models_dir: Path, tmp_path: Path) -> Path:
    """The model repository, readable by the Triton image's non-root user."""
    models = tmp_path / "models-readable" / "models"
    shutil.copytree(triton_models_dir, models)
    for p in [models.parent, models, *models.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    tmp_path.chmod(0o755)
    return models


def test_kube_play_equals_host_and_leaves_nothing(engine: str, pipeline: Path, operator_image: str,
                                                  triton_cpu_image: str, readable_models: Path,
                                                  triton_server: TritonServer, pytestconfig: pytest.Config,
                                                  tmp_path: Path) -> None:
    requires("kube")
    if engine != "podman":
        pytest.skip("RUNTIME=kube plays pods with podman")
    host_out, kube_out = tmp_path / "host", tmp_path / "kube"
    triton_env = {"NVIDIA_TRITON_GRPCURI": triton_server.grpc_url,
                  "NVIDIA_TRITON_HTTPURI": triton_server.http_url.removeprefix("http://")}
    check(make("run-pipeline", pytestconfig, env={**triton_env, "ODK_RUN_DIR": str(tmp_path / "host-run")},
               RUNTIME="host", PIPELINE=str(pipeline), IMAGE=operator_image.rsplit(":", 1)[0],
               INPUT_DIR=str(SAMPLE), OUTPUT_DIR=str(host_out)))

    before = {kind: podman_names(kind) for kind in ("pod", "volume", "network")}
    run_dir = tmp_path / "kube-run"
    result = check(make("run-pipeline", pytestconfig, env={"ODK_RUN_DIR": str(run_dir)}, RUNTIME="kube",
                        PIPELINE=str(pipeline), KUBE_TRITON_IMAGE=triton_cpu_image, MODELS_DIR=str(readable_models),
                        INPUT_DIR=str(SAMPLE), OUTPUT_DIR=str(kube_out)))
    dag_order = load_pipeline(pipeline).order()
    assert dag_order == ["segmentation", "export"]
    assert played_order(result.stderr) == ["triton", *dag_order], result.stderr  # Triton ready before any operator
    played = sorted(p.name for p in (run_dir / "kube-play" / "pods").glob("*.yaml"))
    assert [p.split("-")[0] for p in played] == ["export", "segmentation", "triton"]
    after = {kind: podman_names(kind) for kind in ("pod", "volume", "network")}
    for kind in after:
        assert after[kind] <= before[kind], f"{kind}s left behind: {after[kind] - before[kind]}"
    ours = {p.removesuffix(".yaml") for p in played}
    assert not ours & after["pod"]

    assert_same_outputs(kube_out, host_out)
    summary = sorted(p.name for p in (kube_out / "export" / "summary").iterdir())
    assert summary == ["labels", "summary.csv", "summary.json"]


def test_kube_runtime_refuses_an_unplayable_pipeline(engine: str, tmp_path: Path) -> None:
    result = make("run-pipeline", env={"ODK_RUN_DIR": str(tmp_path)}, RUNTIME="kube",
                  PIPELINE="tests/data/pipelines/valid/v050-typed-io.yml", OUTPUT_DIR=str(tmp_path / "out"))
    assert result.returncode != 0
    assert "has no path (Clara passes it in memory)" in result.stderr
    assert not list(tmp_path.glob("kube-play/pods/*.yaml"))  # refused before any pod was played


def test_kube_runtime_without_the_images_is_one_line(engine: str, pipeline: Path, tmp_path: Path) -> None:
    result = make("run-pipeline", env={"ODK_RUN_DIR": str(tmp_path)}, RUNTIME="kube", PIPELINE=str(pipeline),
                  KUBE_TRITON_IMAGE="localhost/odk-no-such-triton:none", OUTPUT_DIR=str(tmp_path / "out"))
    assert one_error_line(result) == (
        "[odk] error: Triton image localhost/odk-no-such-triton:none not found by podman; build the CPU one "
        "(scripts/triton-cpu/build.sh) and set KUBE_TRITON_IMAGE to it, or pull a Triton image")
