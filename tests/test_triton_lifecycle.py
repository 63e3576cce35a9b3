"""Starting and stopping the embedded Triton for real: readiness, failures, and what stop leaves behind."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sysconfig
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tiny_model import NAME, write_tiny_repository

from kit.triton.embedded import StartError, start, stop
from kit.triton.readiness import free_ports, port_in_use
from kit.triton.state import Ports, fix_libpython_path

ROOT = Path(__file__).resolve().parents[1]


def _ports() -> Ports:
    return Ports(*free_ports(3))


def _processes_with_arg(needle: str) -> list[int]:
    """Live pids whose command line contains `needle` as one argument (servers on a given port, ...)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle.encode() in args and state != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def repo_with_unservable(tmp_path) -> Path:
    root = write_tiny_repository(tmp_path / "models")
    plan = root / "trt_model"
    (plan / "1").mkdir(parents=True)
    (plan / "1" / "model.plan").write_bytes(b"\0" * 16)
    (plan / "config.pbtxt").write_text('name: "trt_model"\nplatform: "tensorrt_plan"\nmax_batch_size: 1\n')
    return root


def test_unservable_model_is_refused_by_name_and_nothing_starts(repo_with_unservable, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(StartError) as err:
        start(repo_with_unservable, _ports(), run_dir, timeout=60)
    message = str(err.value)
    assert "trt_model" in message and "tensorrt_plan" in message and "TRITON_SKIP_UNSERVABLE=1" in message
    assert not (run_dir / "triton.log").exists()


def test_skip_unservable_serves_the_rest_and_stop_leaves_nothing_behind(repo_with_unservable, tmp_path):
    run_dir, ports = tmp_path / "run", _ports()
    handle = start(repo_with_unservable, ports, run_dir, timeout=180, skip_unservable=True)
    try:
        assert handle.models == ((NAME, 1),)
        server_procs = _processes_with_arg(str(ports.grpc))
        assert len(server_procs) >= 2, "the kit.triton serve process and tritonserver"
        libdir = sysconfig.get_config_var("LIBDIR")
        for pid in server_procs:  # the libpython fix reaches tritonserver and its python backend stub
            environ = dict(v.split(b"=", 1) for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if v)
            assert environ[b"LD_LIBRARY_PATH"].decode().split(":")[0] == libdir
        backend_shm = [p for p in os.listdir("/dev/shm") if p.startswith(f"pytrtion{handle.pid}-")]
        assert backend_shm, "the python backend's shared memory of this server"
        with grpcclient.InferenceServerClient(handle.grpc_url) as client:
            assert client.is_model_ready(NAME)
            assert not client.is_model_ready("trt_model")
        assert "trt_model" in handle.log_file.read_text()  # the skipped model is named in the log
        with pytest.raises(StartError, match="already running"):
            start(repo_with_unservable, _ports(), run_dir, timeout=60, skip_unservable=True)
    finally:
        assert stop(run_dir)
    assert _processes_with_arg(str(ports.grpc)) == []
    assert not any(port_in_use(p) for p in (ports.http, ports.grpc, ports.metrics))
    assert not (run_dir / "mode").exists() and not (run_dir / "triton.pid").exists()
    assert [p for p in os.listdir("/dev/shm") if p.startswith(f"pytrtion{handle.pid}-")] == []
    assert handle.log_file.exists(), "the log stays for inspection"
    assert stop(run_dir) is False


def test_readiness_timeout_fails_with_log_tail_and_kills_the_server(tmp_path):
    repo = write_tiny_repository(tmp_path / "models")
    run_dir, ports = tmp_path / "run", _ports()
    with pytest.raises(StartError) as err:
        start(repo, ports, run_dir, timeout=0.5)
    message = str(err.value)
    assert "not ready after 0.5 s" in message
    assert f"--- last lines of {run_dir / 'triton.log'} ---" in message
    assert _processes_with_arg(str(ports.grpc)) == []
    assert not port_in_use(ports.http)
    assert not (run_dir / "mode").exists()


def test_model_the_server_cannot_load_fails_fast_naming_it(tmp_path):
    repo = write_tiny_repository(tmp_path / "models")
    config = repo / NAME / "config.pbtxt"
    config.write_text(config.read_text().replace("dims: [ 1, 96, 96, 96 ]", "dims: [ 1, 64, 64, 64 ]"))
    run_dir, ports = tmp_path / "run", _ports()
    with pytest.raises(StartError) as err:
        start(repo, ports, run_dir, timeout=120)
    message = str(err.value)
    assert "ended before it was ready" in message
    assert f"model cannot be served: {NAME}: input 'NV_MODEL_INPUT' has shape" in message
    assert _processes_with_arg(str(ports.grpc)) == []


def test_port_in_use_is_refused_with_the_variable_to_change(tmp_path):
    repo = write_tiny_repository(tmp_path / "models")
    ports = _ports()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", ports.grpc))
        busy.listen()
        with pytest.raises(StartError, match=rf"port {ports.grpc} \(TRITON_GRPC_PORT\) is already in use"):
            start(repo, ports, tmp_path / "run", timeout=60)
    assert _processes_with_arg(str(ports.http)) == []


def test_libpython_directory_goes_first_on_the_library_path():
    libdir = sysconfig.get_config_var("LIBDIR")
    env = {"LD_LIBRARY_PATH": f"/opt/x:{libdir}:/opt/y"}
    assert fix_libpython_path(env) == libdir
    assert env["LD_LIBRARY_PATH"] == f"{libdir}:/opt/x:/opt/y"
    empty: dict[str, str] = {}
    fix_libpython_path(empty)
    assert empty["LD_LIBRARY_PATH"] == libdir


def _script(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "scripts" / "triton.sh"), command], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300, check=False)


def test_make_triton_script_embedded_start_status_stop(tmp_path):
    repo = write_tiny_repository(tmp_path / "models")
    http, grpc, metrics = free_ports(3)
    env = {"TRITON_MODE": "embedded", "MODELS_DIR": str(repo), "ODK_RUN_DIR": str(tmp_path / "run"),
           "TRITON_HTTP_PORT": str(http), "TRITON_GRPC_PORT": str(grpc), "TRITON_METRICS_PORT": str(metrics)}
    started = _script("start", env)
    try:
        assert started.returncode == 0, started.stderr
        assert f"gRPC 127.0.0.1:{grpc}" in started.stderr
        status = _script("status", env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "triton: embedded" in status.stdout and f"{NAME} v1: ready" in status.stdout
        again = _script("start", env)
        assert again.returncode == 1
        assert again.stderr.strip().splitlines()[-1].startswith("[odk] error: a Triton started by 'make triton'")
    finally:
        stopped = _script("stop", env)
    assert stopped.returncode == 0 and "stopped" in stopped.stderr
    assert _script("status", env).returncode == 3
    assert not port_in_use(grpc)
    assert _script("stop", env).returncode == 0  # nothing to stop is not an error


def test_make_triton_status_when_nothing_runs_says_so_first_and_what_to_do(tmp_path):
    """Exit 3 (not running) for scripts; through make our one line comes first, then only make's own line."""
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))} | {"ODK_RUN_DIR": str(run)}
    result = subprocess.run(["make", "triton-status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode != 0
    assert result.stdout.splitlines() == [
        f"triton: not running (no 'make triton' state in {run / 'triton'}); start it with 'make triton'"]
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        line for line in result.stderr.splitlines() if line.startswith("make") and "triton-status] Error 3" in line]


def _group(pgid: int) -> list[int]:
    from kit.triton.embedded import _group_members

    return _group_members(pgid)


def _infer(grpc_url: str, batch: int) -> None:
    from tiny_model import INPUT, OUTPUT, WINDOW

    x = np.random.default_rng(1).normal(size=(batch, 1, WINDOW, WINDOW, WINDOW)).astype(np.float32)
    inp = grpcclient.InferInput(INPUT, list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    with grpcclient.InferenceServerClient(grpc_url) as client:
        client.infer(NAME, [inp], outputs=[grpcclient.InferRequestedOutput(OUTPUT)], client_timeout=120)


def test_make_triton_reaps_the_tensor_store_of_a_killed_server_and_not_a_live_ones(triton_server, tmp_path):
    """PyTriton's tensor store (psm_* in /dev/shm) is unlinked only on a clean close: a server whose whole group
    is SIGKILLed mid-request leaves it. The next `make triton` removes those segments (no living process maps
    them) and says how much it freed; the segments of a server that still runs stay, and it still answers."""
    from kit.triton.shm import kit_segments, segments_in_use
    from kit.triton.state import read_state

    _infer(triton_server.grpc_url, 1)
    live = {n for n in segments_in_use([triton_server.pid, *_group(triton_server.pid)]) if n.startswith("psm_")}
    assert live, "the live server maps no tensor-store segment after a request"
    http, grpc, metrics = free_ports(3)
    run = tmp_path / "run"
    env = {**os.environ, "TRITON_MODE": "embedded", "MODELS_DIR": str(triton_server.models_dir),
           "ODK_RUN_DIR": str(run), "TRITON_HTTP_PORT": str(http), "TRITON_GRPC_PORT": str(grpc),
           "TRITON_METRICS_PORT": str(metrics)}

    def make(target: str) -> subprocess.CompletedProcess:
        return subprocess.run(["make", target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                              check=False)

    started = make("triton")
    assert started.returncode == 0, started.stderr
    pgid = read_state(run / "triton").pid
    try:
        errors: list[BaseException] = []
        request = threading.Thread(target=lambda: _catch(errors, _infer, f"127.0.0.1:{grpc}", 4), daemon=True)
        request.start()
        dead: set[str] = set()
        deadline = time.monotonic() + 120
        while request.is_alive() and time.monotonic() < deadline:
            dead = {n for n in segments_in_use(_group(pgid)) if n.startswith("psm_")}
            if dead:
                break
            time.sleep(0.01)
        mid_request = request.is_alive()
        os.killpg(pgid, signal.SIGKILL)
        request.join(60)
        assert dead and mid_request, "the request ended before its tensors were in the store"
        assert errors, "the killed server answered the request"
        deadline = time.monotonic() + 30
        while _group(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert dead <= set(kit_segments()), "the killed server's segments were gone before make triton"

        again = make("triton")
        assert again.returncode == 0, again.stderr
        assert "[odk] freed " in again.stderr and "MB of shared memory" in again.stderr, again.stderr
        now = set(kit_segments())
        assert not dead & now, sorted(dead & now)
        assert live <= now, sorted(live - now)
        _infer(triton_server.grpc_url, 1)  # the live server's store still works
    finally:
        stopped = make("triton-stop")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    assert stopped.returncode == 0, stopped.stderr


def _catch(errors: list[BaseException], func, *args) -> None:
    try:
        func(*args)
    except Exception as exc:  # the server died under the request: the error the client sees
        errors.append(exc)
