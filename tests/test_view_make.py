"""``make view`` / ``make view-stop`` as a user runs them: URL printed, pid recorded, Ctrl-C, one-line errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
from container_helpers import one_error_line
from view_helpers import ROOT, make_env, make_view, rest_of_output, write_ct_and_seg, write_report

from kit.triton.readiness import free_ports
from kit.view import state


@pytest.fixture()
def results(tmp_path: Path) -> tuple[Path, Path]:
    out, inp = tmp_path / "output", tmp_path / "input"
    write_ct_and_seg(inp / "case1.nii.gz", out / "case1_seg.nii.gz")
    write_report(out, "case1", str(inp / "case1.nii.gz"))
    return out, inp


def make(target: str, run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", target, *args], cwd=ROOT, env=make_env(run_dir), capture_output=True, text=True,
                          timeout=60, check=False)


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_make_view_prints_its_url_records_its_pid_and_stops_on_ctrl_c(results, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with make_view(*results, run_dir) as view:
        with urllib.request.urlopen(view.url + "api/overview", timeout=10) as resp:
            assert b'"case1"' in resp.read()
        pid = state.recorded_pid(run_dir / "view")
        assert pid and state.is_viewer(pid) and os.getpgid(pid) == view.proc.pid  # the server, under make
        assert state.read(run_dir / "view")["url"] == view.url
        status = make("view-status", run_dir)
        assert status.returncode == 0 and view.url in status.stdout
        os.killpg(view.proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        out = rest_of_output(view)
        assert "[odk] viewer stopped" in out and "Traceback" not in out, out
        assert not (run_dir / "view" / "view.pid").exists() and port_is_free(view.port)
    status = make("view-status", run_dir)
    assert status.returncode != 0 and "view: not running" in status.stdout


def test_make_view_stop_stops_a_viewer_in_the_background(results, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with make_view(*results, run_dir) as view:
        pid = state.recorded_pid(run_dir / "view")
        again = make("view", run_dir, f"OUTPUT_DIR={results[0]}", f"VIEW_PORT={free_ports(1)[0]}")
        assert f"a viewer is already running at {view.url} (pid {pid})" in one_error_line(again)
        stopped = make("view-stop", run_dir)
        assert stopped.returncode == 0 and f"viewer (pid {pid}) stopped" in stopped.stderr
        out = rest_of_output(view)
        assert "[odk] viewer stopped" in out and "Traceback" not in out, out
        assert not state.is_viewer(pid) and not (run_dir / "view" / "view.pid").exists()
        assert port_is_free(view.port)
    nothing = make("view-stop", run_dir)
    assert nothing.returncode == 0 and "nothing to stop" in nothing.stderr


def test_a_taken_port_is_one_line(results, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = make("view", tmp_path / "run", f"OUTPUT_DIR={results[0]}", f"VIEW_PORT={port}")
    line = one_error_line(result)
    assert f"port {port} on 127.0.0.1 is taken" in line and "VIEW_PORT" in line
    assert not (tmp_path / "run" / "view" / "view.pid").exists()


@pytest.mark.parametrize("args, words", [
    (["OUTPUT_DIR=/nonexistent/results"], "OUTPUT_DIR '/nonexistent/results' is not a folder"),
    (["VIEW_PORT=eighty"], "VIEW_PORT must be a port number"),
])
def test_what_make_view_cannot_do_is_one_line(tmp_path: Path, args: list[str], words: str) -> None:
    assert words in one_error_line(make("view", tmp_path / "run", *args))
