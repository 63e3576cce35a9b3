"""SIGINT (Ctrl-C: the whole process group) and SIGTERM (to make alone) in the middle of a real `make demo`
and `make run-pipeline`: what they started is stopped, nothing is left in /dev/shm or the output folder."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

from kit.triton.readiness import free_ports, port_in_use
from kit.triton.state import read_state

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "local" / "input" / "synthetic_phantom_001.nii.gz"
PIPELINE = ROOT / "def" / "one-operator-pipeline.yml"


def operator_pid(tag: str) -> int | None:
    """The pid of the running operator (python -m app) whose environment carries ODK_TEST_TAG=tag."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"-m" in argv and b"app" in argv and f"ODK_TEST_TAG={tag}".encode() in environ:
            return int(entry.name)
    return None


def regions(pid: int) -> list[str]:
    return sorted(p.name for p in Path("/dev/shm").glob(f"odk_{pid}_*"))


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def interrupt_mid_run(cmd: list[str], env: dict[str, str], tag: str, how: str) -> tuple[int, str, int]:
    """Start cmd, wait until its operator has its shm regions (inference under way), send the signal;
    returns (exit code, stderr, operator pid)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    pid = None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            pid = pid or operator_pid(tag)
            if pid and regions(pid):
                break
            time.sleep(0.2)
        assert pid and regions(pid), "the operator never set up its shared memory"
        time.sleep(1.0)  # windows in flight
        if how == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        else:
            os.kill(proc.pid, signal.SIGTERM)  # to make alone, as a supervisor does
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err, pid


def leftover_temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp")] if folder.exists() else []


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_interrupted_demo_stops_its_triton_and_leaves_nothing(how: str, tmp_path: Path) -> None:
    http, grpc, metrics = free_ports(3)
    tag = uuid.uuid4().hex
    out = tmp_path / "output"
    run = tmp_path / "run"
    env = {**os.environ, "ODK_RUN_DIR": str(run), "TRITON_HTTP_PORT": str(http), "TRITON_GRPC_PORT": str(grpc),
           "TRITON_METRICS_PORT": str(metrics), "OUTPUT_DIR": str(out), "TRITON_MODE": "embedded",
           "ODK_TEST_TAG": tag}
    server: list[int] = []

    def remember_server() -> None:
        state = read_state(run / "triton")
        if state is not None:
            server.append(state.pid)

    code, err, pid = interrupt_mid_run(["make", "-C", str(ROOT), "demo"], env, tag, how)
    remember_server()
    assert code != 0, err
    assert "embedded Triton stopped" in err, err[-3000:]
    assert not alive(pid), "the operator is stopped"
    assert regions(pid) == [], "no shared-memory region left in /dev/shm"
    assert leftover_temporaries(out) == []
    assert not any(port_in_use(p) for p in (http, grpc, metrics)), "the demo's Triton is stopped"
    assert not (run / "triton" / "mode").exists()
    for stale in Path("/dev/shm").glob("pytrtion*"):
        assert not any(stale.name.startswith(f"pytrtion{p}-") for p in server)


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_interrupted_run_pipeline_stops_the_operator_and_leaves_nothing(how: str, triton_server,
                                                                       tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    for n in range(3):  # several studies: the signal comes while the first is in flight
        shutil.copy(SAMPLE, inp / f"case_{n}.nii.gz")
    tag = uuid.uuid4().hex
    env = {**os.environ, "PIPELINE": str(PIPELINE), "RUNTIME": "host", "INPUT_DIR": str(inp),
           "OUTPUT_DIR": str(out), "ODK_RUN_DIR": str(tmp_path / "run"), "ODK_TEST_TAG": tag,
           "NVIDIA_TRITON_GRPCURI": triton_server.grpc_url}
    code, err, pid = interrupt_mid_run(["make", "-s", "-C", str(ROOT), "run-pipeline"], env, tag, how)
    assert code != 0
    errors = [line for line in err.splitlines() if line.startswith("[odk] error:")]
    assert errors and errors[-1].startswith(f"[odk] error: interrupted by {how}"), err[-3000:]
    assert not alive(pid)
    assert regions(pid) == []
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as client:
        registered = list(client.get_system_shared_memory_status().regions)
    assert not [name for name in registered if name.startswith(f"odk_{pid}_")], err[-3000:]
    assert leftover_temporaries(out) == []
