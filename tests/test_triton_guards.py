"""`make triton` as an unkind world uses it: who can reach it, `make clean` while it (or the PACS and the listener)
runs, a SIGKILLed server, and configuration numbers that would make a wait endless."""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dicom_net_helpers import processes_mentioning, require_tools, running_listener, running_pacs
from tiny_model import write_tiny_repository

from kit.triton.embedded import is_embedded_server
from kit.triton.readiness import free_ports, port_in_use
from kit.triton.state import read_state

ROOT = Path(__file__).resolve().parents[1]
LISTEN = "0A"
LISTENER_PIPELINE = ROOT / "tests" / "data" / "listener" / "inventory-pipeline.yml"


def listening_addresses(port: int) -> set[str]:
    """The local addresses that listen on TCP `port` (IPv4-mapped IPv6 as IPv4), from /proc/net/tcp*."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] != LISTEN or int(hex_port, 16) != port:
                continue
            # The kernel prints each 32-bit word of the address in host (little-endian) byte order.
            raw = b"".join(bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, len(address), 8))
            ip = ipaddress.ip_address(raw)
            mapped = getattr(ip, "ipv4_mapped", None)
            found.add(str(mapped or ip))
    return found


def make(target: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-C", str(cwd), target], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=300, check=False)


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("make")]
    return lines[-1] if lines else ""


@pytest.fixture
def triton_env(tmp_path: Path) -> dict[str, str]:
    http, grpc, metrics = free_ports(3)
    return {"TRITON_MODE": "embedded", "MODELS_DIR": str(write_tiny_repository(tmp_path / "models")),
            "ODK_RUN_DIR": str(tmp_path / "run"), "TRITON_HTTP_PORT": str(http), "TRITON_GRPC_PORT": str(grpc),
            "TRITON_METRICS_PORT": str(metrics)}


def kill_group(pid: int) -> None:
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while is_embedded_server(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def test_loopback_only_clean_refused_and_killed_server_leftovers_removed(triton_env: dict[str, str],
                                                                         tmp_path: Path) -> None:
    run_dir = Path(triton_env["ODK_RUN_DIR"]) / "triton"
    ports = [int(triton_env[v]) for v in ("TRITON_HTTP_PORT", "TRITON_GRPC_PORT", "TRITON_METRICS_PORT")]
    started = make("triton", triton_env)
    try:
        assert started.returncode == 0, started.stderr
        state = read_state(run_dir)
        assert state is not None and is_embedded_server(state.pid)
        for port in ports:  # inference and shm registration are not open to the network
            assert listening_addresses(port) == {"127.0.0.1"}, port

        refused = make("clean", triton_env)
        assert refused.returncode != 0
        assert last_line(refused) == (f"[odk] error: still running: triton (pid {state.pid}); run 'make "
                                      "triton-stop' first (make clean would lose the state needed to stop it)")
        assert read_state(run_dir) == state and (run_dir / "triton.pid").is_file()
        assert is_embedded_server(state.pid)

        workspace = Path(state.workspace)
        assert workspace.is_dir() and workspace.parent == Path("/tmp")
        size = sum(p.stat().st_size for p in workspace.rglob("*") if p.is_file() and not p.is_symlink())
        kill_group(state.pid)
        assert workspace.is_dir(), "a SIGKILLed server cannot clean up after itself"
        print(f"workspace left by the killed server: {size / 1e6:.1f} MB")

        again = make("triton", triton_env)  # the next start removes what the killed one left
        assert again.returncode == 0, again.stderr
        assert not workspace.exists()
        assert [p for p in os.listdir("/dev/shm") if p.startswith(f"pytrtion{state.pid}-")] == []
        second = read_state(run_dir)
        assert second is not None and Path(second.workspace).is_dir()
    finally:
        stopped = make("triton-stop", triton_env)
    assert stopped.returncode == 0, stopped.stderr
    assert not Path(second.workspace).exists()
    assert not any(port_in_use(p) for p in ports)

    kill_target = make("triton", triton_env)  # killed, then `make triton-stop`: cleaned too
    try:
        assert kill_target.returncode == 0, kill_target.stderr
        third = read_state(run_dir)
        assert third is not None
        kill_group(third.pid)
    finally:
        assert make("triton-stop", triton_env).returncode == 0
    assert not Path(third.workspace).exists()
    assert [p for p in os.listdir("/dev/shm") if p.startswith(f"pytrtion{third.pid}-")] == []

    # Nothing runs any more: clean goes ahead (in a copy of the scripts, so this worktree keeps its outputs).
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "scripts", copy / "scripts")
    (copy / "local" / "output" / "study").mkdir(parents=True)
    (copy / "local" / "output" / ".gitkeep").touch()
    cleaned = subprocess.run(["bash", str(copy / "scripts" / "clean.sh")], env={**os.environ, **triton_env},
                             capture_output=True, text=True, timeout=60, check=False)
    assert cleaned.returncode == 0, cleaned.stderr
    assert not Path(triton_env["ODK_RUN_DIR"]).exists()
    assert sorted(p.name for p in (copy / "local" / "output").iterdir()) == [".gitkeep"]


def test_clean_is_refused_for_any_live_service(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    """A real `make pacs` and `make listen`, recorded as their scripts record them: `make clean` refuses while
    they run (naming each and its stop target) and keeps their state; once they are stopped it goes ahead."""
    require_tools()
    run = tmp_path / "run"
    (run / "gone").mkdir(parents=True)
    (run / "gone" / "gone.pid").write_text("999999999\n")  # state of a server that ended: no obstacle
    tree = tmp_path / "tree"  # `make clean` in a copy, so that this worktree keeps its outputs whatever happens
    shutil.copytree(ROOT / "scripts", tree / "scripts")
    shutil.copy2(ROOT / "Makefile", tree / "Makefile")
    (tree / "local" / "output" / "study").mkdir(parents=True)
    env = {"ODK_RUN_DIR": str(run)}
    with running_pacs(run, pytestconfig), running_listener(run, LISTENER_PIPELINE, pytestconfig):
        pids = {name: (run / name / f"{name}.pid").read_text().strip() for name in ("listen", "pacs")}
        refused = make("clean", env, cwd=tree)
        assert refused.returncode != 0
        assert last_line(refused) == (
            f"[odk] error: still running: listen (pid {pids['listen']}), pacs (pid {pids['pacs']}); run "
            "'make listen-stop', 'make pacs-stop' first (make clean would lose the state needed to stop it)")
        assert all((run / name / "state").is_file() for name in pids)
        assert (tree / "local" / "output" / "study").is_dir()
    assert processes_mentioning(str(run)) == []  # the stop targets still found what to stop

    cleaned = make("clean", env, cwd=tree)
    assert cleaned.returncode == 0, cleaned.stderr
    assert not run.exists()
    assert sorted(p.name for p in (tree / "local" / "output").iterdir()) == [".gitkeep"]


@pytest.mark.parametrize(("var", "value", "message"), [
    ("TRITON_READY_TIMEOUT", "nan", "TRITON_READY_TIMEOUT must be whole seconds 1..86400, not 'nan'"),
    ("TRITON_READY_TIMEOUT", "inf", "TRITON_READY_TIMEOUT must be whole seconds 1..86400, not 'inf'"),
    ("TRITON_READY_TIMEOUT", "0", "TRITON_READY_TIMEOUT must be whole seconds 1..86400, not '0'"),
    ("TRITON_GRPC_PORT", "70000", "TRITON_GRPC_PORT must be a port number 1..65535, not '70000'"),
    ("TRITON_HTTP_PORT", "0", "TRITON_HTTP_PORT must be a port number 1..65535, not '0'"),
])
def test_make_triton_refuses_numbers_that_cannot_work(triton_env: dict[str, str], var: str, value: str,
                                                       message: str) -> None:
    proc = make("triton", {**triton_env, var: value})
    assert proc.returncode != 0
    assert last_line(proc) == f"[odk] error: {message}"
    assert not (Path(triton_env["ODK_RUN_DIR"]) / "triton" / "mode").exists()


@pytest.mark.parametrize("argv", [
    ["start", "--timeout", "nan"], ["start", "--timeout", "inf"], ["wait", "--timeout", "-1"],
    ["start", "--grpc-port", "65536"], ["check-ports", "--http-port", "nan"],
])
def test_kit_triton_refuses_non_finite_or_out_of_range_numbers(argv: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "ODK_RUN_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "kit.triton", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "error: argument" in proc.stderr.splitlines()[-1]
    assert not (tmp_path / "triton").exists()


def test_address_that_is_not_an_ip_is_one_line(triton_env: dict[str, str]) -> None:
    proc = make("triton", {**triton_env, "TRITON_ADDRESS": "everywhere"})
    assert proc.returncode != 0
    assert last_line(proc) == ("[odk] error: TRITON_ADDRESS='everywhere' is not an IP address; use 127.0.0.1 "
                               "(the default) or 0.0.0.0 to listen on every interface")


def test_sigterm_while_starting_leaves_no_server(tmp_path: Path) -> None:
    repo = write_tiny_repository(tmp_path / "models")
    http, grpc, metrics = free_ports(3)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "kit.triton", "start", "--models-dir", str(repo), "--run-dir",
                             str(run_dir), "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port",
                             str(metrics)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while read_state(run_dir) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    state = read_state(run_dir)
    assert state is not None, "the server was launched"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.strip().splitlines() == [
        "[odk] error: interrupted while the embedded Triton was starting; the server was stopped"]
    assert not is_embedded_server(state.pid)
    assert read_state(run_dir) is None
    assert not Path(state.workspace).exists()
    assert not any(port_in_use(p) for p in (http, grpc, metrics))
