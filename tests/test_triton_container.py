"""Container mode of scripts/triton.sh, checked with a stand-in `docker` on PATH that records its argv.

There is no GPU container engine here: the stand-in answers like docker and, for `run -d`, starts the
kit's real CPU Triton on the published host ports with the mounted model repository, so the whole
start -> ready -> status -> stop flow runs against a real server. (The containerised CPU Triton itself
runs for real under podman in the container tests.)
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_model import NAME, write_tiny_repository

from kit.triton.readiness import free_ports, port_in_use

ROOT = Path(__file__).resolve().parents[1]

FAKE_ENGINE = r'''
import json, os, signal, subprocess, sys, time
from pathlib import Path
state = Path(os.environ["FAKE_STATE"])
args = sys.argv[1:]
with (state / "calls.jsonl").open("a") as f:
    f.write(json.dumps(args) + "\n")
cfile = lambda name: state / f"container-{name}.json"
def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
cmd = args[0] if args else ""
if cmd == "info" or (cmd == "image" and args[1] == "inspect") or cmd == "pull":
    sys.exit(0)
if cmd == "network":
    marker = state / f"network-{args[2]}"
    if args[1] == "create":
        marker.touch()
    sys.exit(0 if marker.exists() else 1)
if cmd == "inspect":
    fmt, name = args[2], args[3]
    if not cfile(name).exists():
        print(f"Error: no such object: {name}", file=sys.stderr); sys.exit(1)
    c = json.loads(cfile(name).read_text())
    print("triton" if "Labels" in fmt else str(alive(c["pid"])).lower()); sys.exit(0)
if cmd == "logs":
    c = json.loads(cfile(args[-1]).read_text())
    print(Path(c["log"]).read_text()); sys.exit(0)
if cmd == "rm":
    name = args[-1]
    if cfile(name).exists():
        c = json.loads(cfile(name).read_text())
        try:
            os.killpg(c["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
        for _ in range(100):
            if not alive(c["pid"]):
                break
            time.sleep(0.2)
        cfile(name).unlink()
    sys.exit(0)
if cmd == "run" and "--rm" in args:  # the GPU probe: `run --rm --gpus all IMAGE nvidia-smi -L`
    if os.environ.get("FAKE_GPU_IN_CONTAINER") == "1" and "--gpus" in args:
        print("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)")
    sys.exit(0)
if cmd == "run":
    if os.environ.get("FAKE_RUN_ERROR"):
        print(os.environ["FAKE_RUN_ERROR"], file=sys.stderr); sys.exit(126)
    opts = {}
    i, ports, mount = 1, {}, None
    while i < len(args):
        a = args[i]
        if a in ("-p", "--publish"):
            *_addr, host, inner = args[i + 1].split(":"); ports[inner] = host; i += 2  # [ip:]host:inner
        elif a in ("-v", "--volume"):
            mount = args[i + 1].split(":")[0]; i += 2
        elif a in ("--name", "--label", "--gpus", "--ulimit", "--network"):
            opts[a] = args[i + 1]; i += 2
        elif a.startswith("-"):
            i += 1
        else:
            break
    server_args = args[i + 2:]  # after IMAGE and `tritonserver`
    log = state / "server.log"
    if os.environ.get("FAKE_CONTAINER_EXITS") == "1":
        proc = subprocess.Popen(["sh", "-c", "echo 'error: unknown option'; exit 1"], stdout=log.open("w"),
                                stderr=subprocess.STDOUT, start_new_session=True)
    elif os.environ.get("FAKE_CONTAINER_IDLES") == "1":
        proc = subprocess.Popen(["sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    else:
        shm = [a for a in server_args if a.startswith("--allow-client-shm")]
        proc = subprocess.Popen(
            [sys.executable, "-m", "kit.triton", "serve", "--models-dir", mount, "--http-port", ports["8000"],
             "--grpc-port", ports["8001"], "--metrics-port", ports["8002"], *shm],
            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, cwd=os.environ["ODK_ROOT"])
    cfile(opts["--name"]).write_text(json.dumps({"pid": proc.pid, "log": str(log)}))
    print("0123456789ab")
    sys.exit(0)
print(f"fake engine: unhandled {args}", file=sys.stderr)
sys.exit(2)
'''


@pytest.fixture
def fake(tmp_path):
    """PATH with a stand-in `docker` (and an `nvidia-smi` that sees no GPU unless FAKE_HOST_GPU=1)."""
    bin_dir, state = tmp_path / "bin", tmp_path / "engine"
    bin_dir.mkdir()
    state.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f"#!{sys.executable}\n{FAKE_ENGINE}")
    smi = bin_dir / "nvidia-smi"
    smi.write_text('#!/bin/sh\n[ "$FAKE_HOST_GPU" = 1 ] && echo "GPU 0: NVIDIA H100 (UUID: GPU-0)" || exit 9\n')
    for f in (docker, smi):
        f.chmod(0o755)
    http, grpc, metrics = free_ports(3)
    repo = write_tiny_repository(tmp_path / "models")
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}", "ENGINE": "docker", "FAKE_STATE": str(state),
        "ODK_RUN_DIR": str(tmp_path / "run"), "MODELS_DIR": str(repo),
        "TRITON_HTTP_PORT": str(http), "TRITON_GRPC_PORT": str(grpc), "TRITON_METRICS_PORT": str(metrics),
    }
    yield env
    subprocess.run([str(docker), "rm", "-f", "odk-triton"], env={**os.environ, **env}, check=False)


def _script(command: str, env: dict[str, str], **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "scripts" / "triton.sh"), command], env={**os.environ, **env, **extra},
                          capture_output=True, text=True, timeout=300, check=False)


def _calls(env: dict[str, str]) -> list[list[str]]:
    path = Path(env["FAKE_STATE"]) / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _run_detached(env: dict[str, str]) -> list[str]:
    (run,) = [c for c in _calls(env) if c[:2] == ["run", "-d"]]
    return run


def _pairs(argv: list[str]) -> set[tuple[str, str]]:
    return set(itertools.pairwise(argv))


def test_gpu_container_command_line_and_lifecycle(fake):
    env = fake
    started = _script("start", env, TRITON_MODE="container")
    try:
        assert started.returncode == 0, started.stderr
        argv = _run_detached(env)
        repo = Path(env["MODELS_DIR"]).resolve()
        image = "nvcr.io/nvidia/tritonserver:26.05-py3"
        assert {("--name", "odk-triton"), ("--gpus", "all"), ("--ulimit", "memlock=-1"),
                ("--ulimit", "stack=67108864"), ("--network", "odk-net"), ("--label", "org.odk.role=triton"),
                ("-p", f"127.0.0.1:{env['TRITON_HTTP_PORT']}:8000"),
                ("-p", f"127.0.0.1:{env['TRITON_GRPC_PORT']}:8001"),
                ("-p", f"127.0.0.1:{env['TRITON_METRICS_PORT']}:8002"), ("-v", f"{repo}:/models:ro")} <= _pairs(argv)
        assert "--ipc=host" in argv, "clients on the host share system shared memory with the server"
        assert not [a for a in argv if a.startswith("--shm-size")], "engines refuse --shm-size with --ipc=host"
        assert argv[argv.index(image):] == [image, "tritonserver", "--model-repository=/models",
                                            "--allow-client-shm=true"]
        assert ["network", "create", "odk-net"] in _calls(env)
        status = _script("status", env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "triton: container (docker container odk-triton)" in status.stdout
        assert f"{NAME}: ready" in status.stdout
        again = _script("start", env, TRITON_MODE="container")
        assert again.returncode == 1 and "already running" in again.stderr
    finally:
        stopped = _script("stop", env)
    assert stopped.returncode == 0, stopped.stderr
    assert ["rm", "-f", "odk-triton"] in _calls(env)
    assert not port_in_use(int(env["TRITON_GRPC_PORT"]))
    assert _script("status", env).returncode == 3


@pytest.mark.parametrize(
    ("image", "extra", "wants_shm"),
    [
        ("nvcr.io/nvidia/tritonserver:26.04-py3", {}, False),
        ("nvcr.io/nvidia/tritonserver:26.11-py3", {}, True),
        ("nvcr.io/nvidia/tritonserver:24.08-py3", {"TRITON_ALLOW_CLIENT_SHM": "true"}, True),
        ("localhost/odk-triton-cpu:pytriton-0.7.0", {}, False),
    ],
)
def test_allow_client_shm_follows_the_image_version(fake, image, extra, wants_shm):
    # The container "exits" at once: the argv is what is checked, and the start must fail fast and clean.
    result = _script("start", fake, TRITON_MODE="container", TRITON_IMAGE=image, FAKE_CONTAINER_EXITS="1",
                     **extra)
    assert result.returncode == 1
    assert ("--allow-client-shm=true" in _run_detached(fake)) is wants_shm
    assert result.stderr.strip().splitlines()[-1].startswith("[odk] error: Triton container did not become ready")
    assert "error: unknown option" in result.stderr  # the container's log lines are shown
    assert ["rm", "-f", "odk-triton"] in _calls(fake)
    assert not (Path(fake["ODK_RUN_DIR"]) / "triton" / "mode").exists()


def test_cpu_image_runs_without_gpu_flags_or_ulimits(fake):
    result = _script("start", fake, TRITON_MODE="container", TRITON_IMAGE="localhost/odk-triton-cpu:x",
                     TRITON_GPUS="none", FAKE_CONTAINER_EXITS="1")
    argv = _run_detached(fake)
    assert result.returncode == 1
    assert "--gpus" not in argv and "--ulimit" not in argv
    assert "--ipc=host" in argv and ("--network", "odk-net") in _pairs(argv)


def test_private_ipc_namespace_gets_the_recommended_shm_size(fake):
    _script("start", fake, TRITON_MODE="container", TRITON_IPC="", FAKE_CONTAINER_EXITS="1")
    argv = _run_detached(fake)
    assert "--shm-size=1g" in argv and not [a for a in argv if a.startswith("--ipc")]


def test_ulimits_the_engine_cannot_set_give_one_clear_line(fake):
    result = _script("start", fake, TRITON_MODE="container",
                     FAKE_RUN_ERROR="error setting rlimit type 8: operation not permitted")
    assert result.returncode == 1
    assert "run with TRITON_ULIMITS= " in result.stderr.strip().splitlines()[-1]


def test_container_name_already_running_and_port_taken_are_refused(fake):
    docker = fake["PATH"].split(":")[0] + "/docker"
    subprocess.run([docker, "run", "-d", "--name", "odk-triton", "img", "tritonserver"],
                   env={**os.environ, **fake, "FAKE_CONTAINER_IDLES": "1"}, check=True, capture_output=True)
    try:
        result = _script("start", fake, TRITON_MODE="container")
        assert result.returncode == 1
        assert "a container named odk-triton is already running" in result.stderr
    finally:
        subprocess.run([docker, "rm", "-f", "odk-triton"], env={**os.environ, **fake}, check=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", int(fake["TRITON_HTTP_PORT"])))
        busy.listen()
        result = _script("start", fake, TRITON_MODE="container")
    assert result.returncode == 1
    assert f"port {fake['TRITON_HTTP_PORT']} (TRITON_HTTP_PORT) is already in use" in result.stderr
    assert len([c for c in _calls(fake) if c[:2] == ["run", "-d"]]) == 1  # only the idle one above


@pytest.mark.parametrize(
    ("host_gpu", "container_gpu", "expected"),
    [
        ("0", "0", "auto: no NVIDIA GPU on this host -> embedded"),
        ("1", "0", "auto: no GPU visible inside a docker container"),  # e.g. podman ignoring --gpus
    ],
)
def test_auto_uses_the_container_only_when_a_gpu_is_visible_inside(fake, host_gpu, container_gpu, expected):
    # A missing model repository stops the start right after the mode is chosen.
    result = _script("start", fake, TRITON_MODE="auto", FAKE_HOST_GPU=host_gpu,
                     FAKE_GPU_IN_CONTAINER=container_gpu, MODELS_DIR="/nonexistent")
    assert expected in result.stderr
    assert "model repository '/nonexistent' does not exist" in result.stderr
    assert not [c for c in _calls(fake) if c[:2] == ["run", "-d"]]


def test_auto_picks_the_container_when_the_gpu_is_visible_inside(fake):
    result = _script("start", fake, TRITON_MODE="auto", FAKE_HOST_GPU="1", FAKE_GPU_IN_CONTAINER="1",
                     FAKE_CONTAINER_EXITS="1")
    probe = [c for c in _calls(fake) if c[:2] == ["run", "--rm"]]
    assert probe == [["run", "--rm", "--gpus", "all", "nvcr.io/nvidia/tritonserver:26.05-py3", "nvidia-smi", "-L"]]
    assert _run_detached(fake)[:2] == ["run", "-d"]
    assert result.returncode == 1  # the stand-in container exits at once
