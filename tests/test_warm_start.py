"""Warm operator start (kit.warm): host operators fork from a server that has imported the heavy libraries,
each still its own process (session, environment, argv, cwd, log, exit code); a crash or a SIGKILL fails
only that operator; the server ends with the run and leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kit.warm.client import WarmProcess, WarmServer, spawn

ROOT = Path(__file__).resolve().parents[1]
WARM = ROOT / "tests" / "data" / "pipelines" / "warm"
PRELOADED = ["highdicom", "nibabel", "numpy", "pydicom", "pynetdicom", "tritonclient.grpc"]


def _cmdlines() -> dict[int, str]:
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _run_probes(tmp_path: Path, **env: str) -> tuple[int, str, int]:
    runner = subprocess.Popen(
        [sys.executable, "-m", "kit.pipeline.run", str(WARM / "warm.yml"), "--input-dir", str(WARM),
         "--output-dir", str(tmp_path / "out"), "--runtime", "host",
         "--dockerfile", str(ROOT / "tests/data/pipelines/run/Dockerfile.probe"), "--log-dir", str(tmp_path / "logs")],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = runner.communicate(timeout=180)
    return runner.returncode, out, runner.pid


def _started(tmp_path: Path, operator: str) -> dict:
    return json.loads((tmp_path / "out" / operator / "started.json").read_text())


def test_operators_start_warm_and_only_the_failing_ones_fail(tmp_path: Path) -> None:
    code, out, runner_pid = _run_probes(tmp_path)
    assert code == 1, out
    table = out[out.index("operator     status"):].splitlines()[1:]
    status = {row.split()[0]: row.split()[1] for row in table if not row.startswith("[")}
    assert status == {"first": "ok", "crash": "failed", "killed": "failed", "after-crash": "skipped", "last": "ok"}
    assert "exit 1: probe: crashing as asked" in out and "exit -9:" in out
    forked = dict(re.findall(r"\[odk\] ([\w-]+): .* \(warm start: forked by the fork server, pid (\d+)\)", out))
    assert set(forked) == {"first", "crash", "killed", "last"}, out
    first, last = _started(tmp_path, "first"), _started(tmp_path, "last")
    for who, record in (("first", first), ("last", last)):
        assert record["pid"] == int(forked[who])
        assert record["pid"] == record["pgid"] == record["sid"], "its own session and process group"
        assert record["cwd"] == str(ROOT)
        assert record["argv"] == ["tests/data/pipelines/warm/probe.py", f"{who}-arg"]
        assert record["variables"] == {"WARM_PROBE": "ok", "WARM_WHO": who}, "its own environment, read fresh"
        assert record["tasks"] == 1 and record["threads"] == 1, "no thread inherited from the server"
        assert record["fds"] == [0, 1, 2, 3], "only its own stdin/stdout/stderr (3: the listing's own)"
        assert record["handlers_at_start"] == 0, "logging unconfigured until the operator configures it"
        assert record["preloaded"] == PRELOADED
    assert "probe: wrote" in (tmp_path / "logs" / "first.log").read_text()
    assert "crashing as asked" in (tmp_path / "logs" / "crash.log").read_text()
    # Nothing is left: not the operators, not the fork server the run started.
    assert not any(_alive(int(pid)) for pid in forked.values())
    assert [c for c in _cmdlines().values() if "kit.warm" in c and f"--owner-pid {runner_pid} " in c] == []


def test_warm_start_can_be_switched_off(tmp_path: Path) -> None:
    code, out, _ = _run_probes(tmp_path, ODK_WARM_START="0")
    assert code == 1, out
    assert "warm start" not in out
    assert _started(tmp_path, "first")["preloaded"] == [], "a cold operator imports what it needs itself"


@pytest.fixture
def server() -> WarmServer:
    with WarmServer.start() as s:
        yield s
    assert not _alive(s.pid) and not s.folder.exists()


def _script(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "op.py"
    path.write_text(text)
    return [sys.executable, "-u", str(path)]


def test_signals_reach_the_operator_and_the_server_survives(server: WarmServer, tmp_path: Path) -> None:
    argv = _script(tmp_path, "import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    proc = spawn(server.socket, argv, dict(os.environ), tmp_path)
    assert isinstance(proc, WarmProcess)
    assert proc.stdout.readline() == "up\n"
    assert proc.poll() is None
    proc.terminate()
    assert proc.wait(timeout=10) == -signal.SIGTERM
    again = spawn(server.socket, _script(tmp_path, "raise SystemExit(7)\n"), dict(os.environ), tmp_path)
    assert isinstance(again, WarmProcess) and again.wait(timeout=10) == 7
    assert server.alive()


def test_an_operator_whose_runner_is_gone_is_ended(server: WarmServer, tmp_path: Path) -> None:
    argv = _script(tmp_path, "import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    proc = spawn(server.socket, argv, dict(os.environ), tmp_path)
    assert isinstance(proc, WarmProcess) and proc.stdout.readline() == "up\n"
    proc._conn.close()  # what a runner killed with SIGKILL leaves: its end of the connection closed
    deadline = time.monotonic() + 10
    while _alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(proc.pid)
    assert server.alive()


def test_what_cannot_start_warm_says_why(server: WarmServer, tmp_path: Path) -> None:
    assert "not a `python" in spawn(server.socket, [sys.executable, "-c", "pass"], dict(os.environ), tmp_path)
    assert "not a `python" in spawn(server.socket, ["/bin/true"], dict(os.environ), tmp_path)
    changed = {**os.environ, "PYTHONPATH": str(tmp_path)}
    reason = spawn(server.socket, _script(tmp_path, "pass\n"), changed, tmp_path)
    assert isinstance(reason, str) and "PYTHONPATH" in reason


def test_the_server_ends_with_its_owner_even_when_the_owner_is_killed(tmp_path: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", "import time\nfrom kit.warm.client import WarmServer\n"
                              "s = WarmServer.start()\nprint(s.pid, s.folder, flush=True)\ntime.sleep(120)\n"],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        pid, folder = owner.stdout.readline().split()
        assert _alive(int(pid)) and Path(folder).is_dir()
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 15
        while _alive(int(pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(int(pid)), "the fork server outlived its owner"
        assert not Path(folder).exists(), "its socket and private folder are gone"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
