"""The local pipeline runner: wiring, order, variables, failure propagation, command lines."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from container_helpers import python_base
from requires import requires

from kit.pipeline import launch, wiring
from kit.pipeline.model import PipelineError, load_pipeline, params_from
from kit.pipeline.run import resolve_runtime

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "tests" / "data" / "pipelines" / "run"
CHAIN = RUN / "chain.yml"


def run_chain(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    inp = tmp_path / "in"
    (inp / "sub").mkdir(parents=True, exist_ok=True)
    (inp / "sub" / "study.txt").write_text("payload file\n")
    return subprocess.run(
        [sys.executable, "-m", "kit.pipeline.run", str(CHAIN), "--input-dir", str(inp),
         "--output-dir", str(tmp_path / "out"), "--runtime", "host", "--dockerfile", str(RUN / "Dockerfile.probe"),
         "--log-dir", str(tmp_path / "logs"), "--job-name", "chain-test", *extra],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120)


def seen(tmp_path: Path, folder: str) -> dict:
    return json.loads((tmp_path / "out" / folder / "seen.json").read_text())


def test_chain_is_wired_like_the_platform(tmp_path: Path) -> None:
    stale = tmp_path / "out" / "a" / "out" / "stale.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier run")
    (tmp_path / "out" / "a" / ".out.odk-output").touch()  # the marker an earlier run left beside its folder
    proc = run_chain(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = (tmp_path / "out").resolve()
    a, b, c, d = (seen(tmp_path, f) for f in ("a/out", "b", "c/final", "d/alone"))
    assert a["inputs"] == {"payload": str((tmp_path / "in").resolve())}
    assert a["outputs"] == {"a/out": str(out / "a" / "out"), "a/extra": str(out / "a" / "extra")}
    assert b["inputs"] == {"a/out": str(out / "a" / "out")}
    assert b["outputs"] == {"b": str(out / "b")}  # a single unnamed output: entry and folder named after b
    assert c["inputs"] == {"b": str(out / "b"), "a/extra": str(out / "a" / "extra"),
                           "payload": str((tmp_path / "in").resolve())}
    assert c["files"]["b"] == ["seen.json", "study.txt"]  # b's output, carried from the payload via a
    assert d["outputs"] == {"d/alone": str(out / "d" / "alone")}
    assert (a["job"], a["stage"], c["stage"]) == ("chain-test", "a", "c")
    assert a["variables"] == {"PROBE_GREETING": "hello", "PROBE_FAIL": "0", "PROBE_FLAG": "true"}
    assert b["variables"] == {}
    assert not stale.exists(), "output folders start empty, as on the platform"
    # topological order, declaration order among ready operators; the summary table at the end
    starts = [line.split(":")[0] for line in proc.stderr.splitlines() if line.startswith("[odk] ") and ": /" in line]
    assert starts == ["[odk] a", "[odk] b", "[odk] c", "[odk] d"]
    table = proc.stdout[proc.stdout.index("operator  status"):].splitlines()
    assert [row.split()[:2] for row in table[1:]] == [["a", "ok"], ["b", "ok"], ["c", "ok"], ["d", "ok"]]
    assert (tmp_path / "logs" / "c.log").read_text().count("stage c: done") == 1


def test_failed_operator_stops_its_dependants_only(tmp_path: Path) -> None:
    proc = run_chain(tmp_path, "--param", "FAIL=1")
    assert proc.returncode == 1
    rows = {row.split()[0]: row.split()[1] for row in
            proc.stdout[proc.stdout.index("operator  status"):].splitlines()[1:]}
    assert rows == {"a": "failed", "b": "skipped", "c": "skipped", "d": "ok"}
    assert "error: operator 'a' (exit 1) failed" in proc.stderr.splitlines()[-1]
    assert not (tmp_path / "out" / "b").exists()
    assert seen(tmp_path, "d/alone")["stage"] == "d"


def test_bad_pipeline_and_unknown_parameter_are_one_line_errors(tmp_path: Path) -> None:
    bad = ROOT / "tests" / "data" / "pipelines" / "invalid" / "cycle.yml"
    proc = subprocess.run([sys.executable, "-m", "kit.pipeline.run", str(bad), "--runtime", "host"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "cycle.yml:7: error: the operators form a cycle" in proc.stdout
    assert proc.stderr.strip().count("\n") == 0 and "has 1 error(s)" in proc.stderr
    proc = run_chain(tmp_path, "--param", "NOPE=1")
    assert proc.returncode == 1 and "no parameter named NOPE" in proc.stderr


def test_runtime_resolution() -> None:
    chain = load_pipeline(CHAIN)
    assert resolve_runtime(chain, "host", None, "clara/simple-operator") == "host"
    with pytest.raises(PipelineError, match=r"RUNTIME=auto: no working container engine; build the image "
                                            r"\(make build\), or pass RUNTIME=host"):
        resolve_runtime(chain, "auto", None, "clara/simple-operator")
    with pytest.raises(PipelineError, match="needs a working container engine"):
        resolve_runtime(chain, "container", None, "clara/simple-operator")
    foreign = load_pipeline(ROOT / "tests" / "data" / "pipelines" / "valid" / "v040-dicom-test.yml")
    with pytest.raises(PipelineError, match="not built from this repo"):
        resolve_runtime(foreign, "auto", None, "clara/simple-operator")


def test_entry_points_follow_docker_semantics() -> None:
    real = launch.dockerfile_defaults(ROOT / "Dockerfile")
    assert real.entrypoint or real.cmd, "the operator image declares what it runs"
    assert launch.effective_argv(real, ())[-3:] == ["-u", "-m", "app"]
    with_entrypoint = launch.ImageDefaults(entrypoint=("python", "-u", "-m", "app"), cmd=("--x",))
    assert launch.effective_argv(with_entrypoint, ("--fast",)) == ["python", "-u", "-m", "app", "--fast"]
    with_cmd = launch.ImageDefaults(cmd=("python", "-u", "-m", "app"))
    assert launch.effective_argv(with_cmd, ("python", "-m", "app.export")) == ["python", "-m", "app.export"]
    venv = Path("/repo/.venv/bin/python")
    assert launch.host_argv(["python3", "-m", "app"], venv) == [str(venv), "-m", "app"]
    assert launch.host_argv(["/opt/venv/bin/python", "x.py"], venv) == [str(venv), "x.py"]
    assert launch.host_argv(["bash", "-c", "true"], venv) == ["bash", "-c", "true"]
    assert launch.is_repo_image("registry.example.com:5000/clara/simple-operator", "clara/simple-operator")
    assert not launch.is_repo_image("clara/simple-operator-2", "clara/simple-operator")


def test_container_command_mounts_declared_paths(tmp_path: Path) -> None:
    pipeline = load_pipeline(ROOT / "def" / "two-operator-pipeline.yml")
    export = pipeline.operator("export")
    plan = wiring.plan(pipeline, export, tmp_path / "in", tmp_path / "out")
    triton = wiring.Triton(grpc="127.0.0.1:8001", http="127.0.0.1:8000")
    env = wiring.operator_env(plan, False, "0" * 32, "job", triton)
    assert env["NVIDIA_CLARA_INPUTPATHS"] == "segmentation/segmentation:/input"
    assert env["NVIDIA_CLARA_OUTPUTPATHS"] == "export/summary:/output"
    assert env["NVIDIA_CLARA_NOSYNCLOCK"] == "TRUE" and env["NVIDIA_TRITON_GRPCURI"] == "127.0.0.1:8001"
    assert env["EXPORT_COPY_LABELS"] == "true"
    argv = launch.container_argv("podman", "clara/simple-operator:0.1.0", export.command, plan, env,
                                 "odk-export", "1000:1000")
    out = (tmp_path / "out").resolve()
    assert f"{out / 'segmentation' / 'segmentation'}:/input:ro" in argv
    assert f"{out / 'export' / 'summary'}:/output" in argv
    assert argv[-5:] == ["clara/simple-operator:0.1.0", "python", "-u", "-m", "app.export"]
    host_env = wiring.operator_env(plan, True, "0" * 32, "job", triton)
    assert host_env["NVIDIA_CLARA_INPUTPATHS"] == f"segmentation/segmentation:{out / 'segmentation' / 'segmentation'}"


def test_triton_services_point_at_the_local_triton(tmp_path: Path) -> None:
    pipeline = load_pipeline(ROOT / "def" / "one-operator-pipeline.yml")
    op = pipeline.operator("segmentation")
    env = wiring.triton_env(op, wiring.Triton(grpc="127.0.0.1:18001", http="127.0.0.1:18000"))
    assert env["NVIDIA_TRITON_GRPCURI"] == "127.0.0.1:18001"
    trtis = load_pipeline(ROOT / "tests" / "data" / "pipelines" / "valid" / "v040-liver-trtis-service.yml")
    env = wiring.triton_env(trtis.operator("liver-tumor"), wiring.Triton(grpc="h:1", http="h:2"))
    assert env["NVIDIA_CLARA_TRTISURI"] == "h:2"


def test_make_run_pipeline_errors_are_one_line() -> None:
    for extra, fragment in ((["PIPELINE=def/nope.yml"], "is not a file"), (["RUNTIME=vm"], "RUNTIME must be")):
        proc = subprocess.run(["make", "-s", "run-pipeline", *extra], cwd=ROOT, capture_output=True, text=True,
                              check=False)
        assert proc.returncode != 0
        ours = [line for line in proc.stderr.splitlines() if not line.startswith("make:")]
        assert len(ours) == 1 and fragment in ours[0], proc.stderr


def container_engine() -> str | None:
    proc = subprocess.run(["bash", "-c", 'source scripts/lib.sh && detect_engine'], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=120)
    return proc.stdout.strip() or None


@pytest.fixture(scope="module")
def probe_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    requires("containers")
    engine = container_engine()
    assert engine is not None
    ref = "localhost/odk-pipeline-probe:test"
    context = tmp_path_factory.mktemp("probe-image")
    for src in [RUN / "probe.py", *(ROOT / "lib").glob("*.whl")]:
        shutil.copy2(src, context / src.name)
    proc = subprocess.run([engine, "build", "-t", ref, "--build-arg", f"BASE_IMAGE={python_base(engine)}",
                           "-f", str(RUN / "Dockerfile.probe"), str(context)],
                          capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return engine, ref


@pytest.mark.container
def test_chain_in_containers_sees_its_declared_paths(probe_image: tuple[str, str], tmp_path: Path) -> None:
    engine, ref = probe_image
    image, tag = ref.rsplit(":", 1)
    proc = run_chain(tmp_path, "--runtime", "container", "--engine", engine, "--param", f"IMAGE={image}",
                     "--param", f"TAG={tag}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "runtime container" in proc.stderr
    a, c = seen(tmp_path, "a/out"), seen(tmp_path, "c/final")
    assert a["inputs"] == {"payload": "/input"}
    assert a["outputs"] == {"a/out": "/output", "a/extra": "/extra"}
    assert c["inputs"] == {"b": "/in-b", "a/extra": "/in-extra", "payload": "/payload"}
    assert c["files"]["b"] == ["seen.json", "study.txt"]
    assert a["variables"]["PROBE_GREETING"] == "hello" and c["stage"] == "c"
    leftover = subprocess.run([engine, "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
                              check=False).stdout
    assert "odk-a-" not in leftover and "odk-c-" not in leftover



def test_params_give_the_pipelines_parameters_and_a_variable_of_a_parameters_name_does_not(tmp_path: Path) -> None:
    """PARAMS="FAIL=1" as `make run-pipeline PARAMS=...` passes it; a variable named like a parameter (TAG,
    which the Makefile itself exports) is not one; --param wins over PARAMS; a bad entry is one line."""
    env = {**os.environ, "PARAMS": "FAIL=1 GREETING='hi there'", "TAG": "not-a-parameter-value"}
    pipeline = load_pipeline(CHAIN, params_from(env), env)
    assert pipeline.operators[0].variables["PROBE_FAIL"] == "1"
    assert pipeline.operators[0].variables["PROBE_GREETING"] == "hi there"
    assert pipeline.parameters["TAG"] == "0.1.0"
    assert load_pipeline(CHAIN, {**params_from(env), "FAIL": "2"}).operators[0].variables["PROBE_FAIL"] == "2"
    with pytest.raises(PipelineError, match="PARAMS: 'FAIL' is not NAME=VALUE"):
        params_from({"PARAMS": "FAIL"})
    proc = subprocess.run([sys.executable, "-m", "kit.pipeline.run", str(CHAIN), "--runtime", "host"], cwd=ROOT,
                          env={**os.environ, "PARAMS": "NOPE=1"}, capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "no parameter named NOPE" in proc.stderr


def test_the_dicom_destination_reaches_register_results_as_a_pipeline_variable() -> None:
    """Containers and Kubernetes pods see only their pipeline's variables: the destination is a parameter,
    set by PARAMS or by the kit's own DICOM_DESTINATION (as for `make listen`)."""
    dicom = ROOT / "def" / "liver-dicom-pipeline.yml"

    def destination(env: dict[str, str]) -> str:
        pipeline = load_pipeline(dicom, params_from(env), env)
        return pipeline.operator("register-results").variables["DICOM_DESTINATION"]

    assert destination({"DICOM_DESTINATION": "PACS@10.0.0.5:104"}) == "PACS@10.0.0.5:104"
    assert destination({"DICOM_DESTINATION": "A@h:1", "PARAMS": "DICOM_DESTINATION=B@h:2"}) == "B@h:2"
    assert destination({"DICOM_DESTINATION": ""}) == "" == destination({})
    # a pipeline without that parameter is not bothered by the variable
    assert load_pipeline(CHAIN, environ={"DICOM_DESTINATION": "PACS@10.0.0.5:104"}).parameters["FAIL"] == "0"
