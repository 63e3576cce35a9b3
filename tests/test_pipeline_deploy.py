"""make deploy against a stand-in `clara` CLI (the platform itself no longer exists)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from kit.pipeline.deploy import first_id, has_registry

ROOT = Path(__file__).resolve().parents[1]
STANDIN = ROOT / "tests" / "data" / "pipelines" / "clara-standin"
HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def workspace(tmp_path: Path) -> dict[str, Path]:
    models = tmp_path / "models" / "segmentation_liver_v1"
    (models / "1").mkdir(parents=True)
    (models / "config.pbtxt").write_text('name: "segmentation_liver_v1"\nplatform: "onnxruntime_onnx"\n')
    (models / "1" / "model.onnx").write_bytes(b"\x08\x07model-bytes")
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "study.nii.gz").write_bytes(b"\x1f\x8b")
    return {"tmp": tmp_path, "models": tmp_path / "models", "clara_models": tmp_path / "clara" / "common" / "models",
            "input": tmp_path / "input", "run": tmp_path / "run", "log": tmp_path / "clara-argv.jsonl"}


def deploy(ws: dict[str, Path], *extra: str, path: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PATH": path if path is not None else f"{STANDIN}:{os.environ['PATH']}",
                "CLARA_STANDIN_LOG": str(ws["log"]), "ODK_RUN_DIR": str(ws["run"]), **env}
    full_env.pop("CLARA_CLI", None)
    return subprocess.run(
        ["make", "-s", "deploy", "JOB_NAME=liver-job", f"INPUT_DIR={ws['input']}", f"MODELS_DIR={ws['models']}",
         f"CLARA_MODELS_DIR={ws['clara_models']}", *extra],
        cwd=ROOT, env=full_env, capture_output=True, text=True, check=False, timeout=120)


def calls(ws: dict[str, Path]) -> list[list[str]]:
    if not ws["log"].exists():
        return []
    return [json.loads(line) for line in ws["log"].read_text().splitlines()]


def errors(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if "error" in line and not line.startswith("make:")]


def test_deploy_creates_pipeline_and_job_then_starts_it(workspace: dict[str, Path]) -> None:
    proc = deploy(workspace)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    argv = calls(workspace)
    assert [a[:2] for a in argv] == [["create", "pipelines"], ["create", "job"], ["start", "job"]]
    assert argv[0] == ["create", "pipelines", "-p", "def/one-operator-pipeline.yml"]
    pipeline_id = argv[1][argv[1].index("-p") + 1]
    job_id = argv[2][argv[2].index("-j") + 1]
    assert HEX32.match(pipeline_id) and HEX32.match(job_id)
    assert argv[1] == ["create", "job", "-p", pipeline_id, "-n", "liver-job", "-f", str(workspace["input"])]
    # the job id is the first id of `create job` (JOB_ID), not the PAYLOAD_ID after it
    assert f"JOB_ID:{job_id}" in proc.stdout and f"PIPELINE_ID:{pipeline_id}" in proc.stdout
    assert f"job id:      {job_id}" in proc.stdout and f"pipeline id: {pipeline_id}" in proc.stdout
    copied = workspace["clara_models"] / "segmentation_liver_v1"
    assert (copied / "1" / "model.onnx").read_bytes() == b"\x08\x07model-bytes"
    assert (copied / "config.pbtxt").is_file()
    saved = json.loads((workspace["run"] / "deploy" / "last.json").read_text())
    assert saved["pipeline_id"] == pipeline_id and saved["job_id"] == job_id
    assert saved["job_name"] == "liver-job" and saved["models"] == ["segmentation_liver_v1"]
    assert (workspace["run"] / "deploy" / f"{job_id}.json").is_file()
    assert "a cluster can only pull it if it is pushed to a registry it can reach" in proc.stderr


@pytest.mark.parametrize("failing", ["create pipelines", "create job", "start job"])
def test_failing_step_is_named_with_exit_code_and_last_line(workspace: dict[str, Path], failing: str) -> None:
    proc = deploy(workspace, CLARA_STANDIN_FAIL=failing)
    assert proc.returncode != 0
    step = {"create pipelines": "create pipeline"}.get(failing, failing)
    assert errors(proc) == [f"[odk] error: step '{step}' failed (exit 3): Error: Code: -8454, Failed to "
                            f"{failing.replace('pipelines', 'pipeline')}: rpc error: code = Unavailable desc = "
                            "connection refused"]
    assert calls(workspace)[-1][:2] == failing.split()  # nothing ran after the failing step
    assert not (workspace["run"] / "deploy" / "last.json").exists()


def test_model_copy_failure_is_a_step_error(workspace: dict[str, Path]) -> None:
    blocker = workspace["tmp"] / "not-a-dir"
    blocker.write_text("a file where the model repository should be")
    proc = deploy(workspace, f"CLARA_MODELS_DIR={blocker}/models")
    assert proc.returncode != 0
    assert errors(proc)[0].startswith("[odk] error: step 'copy models' failed (exit 1): ")
    assert calls(workspace) == []


def test_dry_run_prints_every_command_and_runs_none(workspace: dict[str, Path]) -> None:
    proc = deploy(workspace, "DRY_RUN=1")
    assert proc.returncode == 0, proc.stderr
    printed = [line for line in proc.stdout.splitlines() if line.startswith("+ ")]
    assert printed == [
        f"+ mkdir -p {workspace['clara_models']}",
        f"+ cp -R {workspace['models'] / 'segmentation_liver_v1'} {workspace['clara_models']}/",
        "+ clara create pipelines -p def/one-operator-pipeline.yml",
        f"+ clara create job -p '<pipeline-id>' -n liver-job -f {workspace['input']}",
        "+ clara start job -j '<job-id>'",
    ]
    assert calls(workspace) == [] and not workspace["clara_models"].exists()
    assert not (workspace["run"] / "deploy").exists()


def test_missing_cli_is_one_clear_line(workspace: dict[str, Path]) -> None:
    proc = deploy(workspace, path="/usr/bin:/bin")
    assert proc.returncode != 0
    assert errors(proc) == ["[odk] error: the clara CLI is not on PATH; install the Clara Deploy CLI (or set "
                            "CLARA_CLI=/path/to/clara), or use DRY_RUN=1 to print the commands"]
    assert not workspace["clara_models"].exists()
    assert deploy(workspace, "DRY_RUN=1", path="/usr/bin:/bin").returncode == 0  # no CLI needed to print


def test_invalid_pipeline_is_not_deployed(workspace: dict[str, Path]) -> None:
    bad = "tests/data/pipelines/invalid/name-mismatch.yml"
    proc = deploy(workspace, f"PIPELINE={bad}")
    assert proc.returncode != 0
    assert f"{bad}:12: error: operator 'b' reads output 'label'" in proc.stdout
    assert calls(workspace) == []


def test_id_parsing_and_registry_detection() -> None:
    assert first_id("PIPELINE_ID:0123456789ABCDEF0123456789abcdef\n") == "0123456789abcdef0123456789abcdef"
    assert first_id("JOB_ID:" + "a" * 32 + "\nPAYLOAD_ID:" + "b" * 32) == "a" * 32
    assert first_id("id " + "c" * 33) is None and first_id("no id here") is None
    assert not has_registry("clara/simple-operator") and not has_registry("ubuntu")
    assert has_registry("nvcr.io/nvidia/clara/dicom-reader") and has_registry("localhost/op")
    assert has_registry("registry.local:5000/clara/simple-operator")


def test_params_are_not_silently_dropped_on_the_way_to_a_clara_cluster(workspace: dict[str, Path]) -> None:
    proc = deploy(workspace, "DRY_RUN=1", "PARAMS=DICOM_DESTINATION=PACS@host:104")
    assert proc.returncode == 0, proc.stderr
    assert "warning: PARAMS is not passed to a Clara cluster" in proc.stderr
