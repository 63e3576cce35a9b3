"""`make deploy PLATFORM=kubernetes` against a stand-in kubectl on PATH (tests/standins/kubectl records its
calls; no Kubernetes cluster can run on the test machine): the cluster objects are applied, the models copied,
the Workflow created; failures of kubectl end in one line; DRY_RUN=1 calls nothing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from container_helpers import ROOT, check, make, one_error_line
from requires import needs

from kit.deploy.check import check_files

STANDINS = ROOT / "tests" / "standins"
PIPELINE = "def/one-operator-pipeline.yml"


@pytest.fixture
def kube(tmp_path: Path) -> dict[str, str]:
    models = tmp_path / "models"  # the sample pipeline's model alone: local/models holds other demo models too
    shutil.copytree(ROOT / "local" / "models" / "segmentation_liver_v1", models / "segmentation_liver_v1",
                    ignore=shutil.ignore_patterns("*.onnx"))
    return {"PATH": f"{STANDINS}{os.pathsep}{os.environ['PATH']}", "KUBECTL_LOG": str(tmp_path / "calls.jsonl"),
            "ODK_RUN_DIR": str(tmp_path / "run"), "MODELS": str(models), "MANIFESTS": str(tmp_path / "manifests")}


def calls(env: dict[str, str]) -> list[list[str]]:
    log = Path(env["KUBECTL_LOG"])
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def deploy(env: dict[str, str], config: pytest.Config | None = None, stdin: int | None = None,
           timeout: float = 600, **extra: str):
    return make("deploy", config, env=env, timeout=timeout, stdin=stdin, PLATFORM="kubernetes", PIPELINE=PIPELINE,
                MODELS_DIR=env["MODELS"], MANIFESTS_DIR=env["MANIFESTS"], **extra)


def test_deploy_applies_objects_copies_models_and_creates_the_workflow(kube, pytestconfig) -> None:
    result = check(deploy(kube, pytestconfig, NAMESPACE="imaging", KUBE_CONTEXT="lab"))
    manifests = Path(kube["MANIFESTS"])
    got = calls(kube)
    assert all(c[:2] == ["--context", "lab"] for c in got), got
    verbs = [c[2] for c in got]
    assert verbs == ["version", "apply", "apply", "wait", "cp", "delete", "apply", "create"]
    assert got[1][2:] == ["apply", "-f", str(manifests / "00-namespace.yaml"), "-f", str(manifests / "10-volumes.yaml")]
    assert got[4][2:] == ["cp", str(Path(kube["MODELS"]) / "segmentation_liver_v1"),
                          "imaging/models-loader:/models/segmentation_liver_v1"]
    assert got[6][2:] == ["apply", "-f", str(manifests / "30-triton.yaml")]
    assert got[7][2:] == ["create", "-f", str(manifests / "40-workflow.yaml"), "-o", "name"]
    assert "workflow: liver-segmentation-x7k2p" in result.stdout
    assert "kubectl get workflow -n imaging liver-segmentation-x7k2p -w" in result.stderr
    applied = sorted(Path(f"{kube['KUBECTL_LOG']}.d").glob("*.yaml"))
    assert [p.name for p in applied] == ["00-namespace.yaml", "10-volumes.yaml", "20-models-loader.yaml",
                                         "30-triton.yaml", "40-workflow.yaml"]
    assert [str(f) for f in check_files(applied)] == []  # what kubectl was given validates
    assert "namespace: imaging" in (manifests / "40-workflow.yaml").read_text()
    assert "triton.imaging.svc:8001" in (manifests / "40-workflow.yaml").read_text()


def test_default_manifests_dir_is_under_run_deploy(kube) -> None:
    check(make("deploy", env=kube, PLATFORM="kubernetes", PIPELINE=PIPELINE, MODELS_DIR=kube["MODELS"]))
    assert (Path(kube["ODK_RUN_DIR"]) / "deploy" / "liver-segmentation" / "40-workflow.yaml").is_file()


def test_dry_run_calls_nothing_and_prints_the_commands(kube) -> None:
    result = check(deploy(kube, DRY_RUN="1"))
    assert calls(kube) == []
    printed = [line for line in result.stdout.splitlines() if line.startswith("$ kubectl ")]
    assert len(printed) == 8 and printed[-1].startswith("$ kubectl create -f ")
    assert (Path(kube["MANIFESTS"]) / "40-workflow.yaml").is_file()


@pytest.mark.parametrize(("fail", "expected"), [
    ("create", "creating the Workflow failed (kubectl exit 1): Error from server (Invalid)"),
    ("apply", "applying the namespace and volumes failed (kubectl exit 1): Error from server (Invalid)"),
])
def test_a_refused_object_is_one_line(kube, fail: str, expected: str) -> None:
    line = one_error_line(deploy({**kube, "KUBECTL_FAIL": fail}))
    assert expected in line
    assert calls(kube)[-1][0] == fail  # nothing after the refused step
    assert fail != "apply" or len(calls(kube)) == 2


def test_unreachable_cluster_is_one_line_and_nothing_is_applied(kube) -> None:
    line = one_error_line(deploy({**kube, "KUBECTL_UNREACHABLE": "1"}))
    assert "reaching the cluster" in line and "was refused" in line
    assert [c[0] for c in calls(kube)] == ["version"]


def kubeconfig(folder: Path, user: str) -> Path:
    """A kubeconfig whose only cluster listens nowhere (127.0.0.1:1); ``user``: the context's user, if any."""
    path = folder / "kubeconfig"
    users = f"users:\n- name: u\n  user: {user}\n" if user else ""
    context = "{cluster: c, user: u}" if user else "{cluster: c}"
    path.write_text("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\n"
                    f"{users}contexts:\n- name: c\n  context: {context}\ncurrent-context: c\n")
    return path


def deploy_with_open_stdin(env: dict[str, str]):
    """make deploy with a standard input that never ends: whatever reads it waits until the bound of 120 s."""
    read, write = os.pipe()
    try:
        return deploy(env, stdin=read, timeout=120)
    finally:
        os.close(write)  # a kubectl left waiting on it (were it so) reads the end and exits
        os.close(read)


@needs("kubectl")
def test_unreachable_cluster_with_the_real_kubectl(kube, tmp_path: Path) -> None:
    env = {k: v for k, v in kube.items() if k != "PATH"} | {
        "KUBECONFIG": str(kubeconfig(tmp_path, "{token: not-a-secret}"))}
    line = one_error_line(deploy_with_open_stdin(env))
    assert line.startswith("[odk] error: reaching the cluster with 'kubectl version'")
    # kubectl's own reason (on stderr), not the client version it printed on stdout before it
    assert "127.0.0.1:1" in line and "refused" in line, line
    assert "Version" not in line.split("(kubectl exit 1):")[1], line


@needs("kubectl")
def test_a_kubeconfig_without_user_does_not_wait_for_a_password(kube, tmp_path: Path) -> None:
    env = {k: v for k, v in kube.items() if k != "PATH"} | {"KUBECONFIG": str(kubeconfig(tmp_path, ""))}
    line = one_error_line(deploy_with_open_stdin(env))  # kubectl asks for a user name: it reads no answer
    assert line.startswith("[odk] error: reaching the cluster with 'kubectl version'")
    assert "kubectl asked for a user name" in line, line


def test_missing_kubectl_is_one_line(kube) -> None:
    line = one_error_line(deploy({**kube, "KUBECTL": "/nonexistent/kubectl"}))
    assert line.startswith("[odk] error: kubectl not found (/nonexistent/kubectl)")


def test_invalid_pipeline_applies_nothing(kube, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text((ROOT / PIPELINE).read_text().replace("- name: segmentation", "- name: seg/mentation"))
    result = make("deploy", env=kube, PLATFORM="kubernetes", PIPELINE=str(bad), MODELS_DIR=kube["MODELS"])
    assert result.returncode != 0 and calls(kube) == []


def test_unknown_platform_is_one_line() -> None:
    assert one_error_line(make("deploy", PLATFORM="nomad")) == \
        "[odk] error: PLATFORM must be clara or kubernetes, not 'nomad'"


def test_what_kubernetes_cannot_express_is_one_line_and_nothing_is_called(kube) -> None:
    result = make("deploy", env=kube, PLATFORM="kubernetes", PIPELINE="tests/data/pipelines/valid/v050-typed-io.yml")
    assert "array output 'volume' has no path" in one_error_line(result)
    assert calls(kube) == []
