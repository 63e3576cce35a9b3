"""Run-level problems on the output side, and signals: the run stops with one line, nothing partial stays.

Read-only and full file systems are real (small tmpfs mounts); signals go to a real operator process.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from operator_helpers import RunningOperator, error_lines, leftovers, own_shm_files, run_operator, studies


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "odk-test", str(where)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _complete_or_absent(out: Path, names: list[str]) -> None:
    """Each study has all three outputs or none."""
    for name in names:
        present = [(out / f).exists() for f in (f"{name}_seg.nii.gz", f"{name}_overlay.png", f"{name}.json")]
        assert all(present) or not any(present), (name, present)


def test_read_only_output_folder_stops_before_any_inference(triton_server, tmp_path):
    studies(tmp_path / "in", 2, shape=(64, 64, 24))
    with tmpfs(tmp_path / "out", "ro,size=1m") as out:
        proc = run_operator(tmp_path / "in", out, triton_server.grpc_url)
    log = proc.stdout
    assert proc.returncode == 1, log
    errors = error_lines(log)
    assert len(errors) == 1 and "read-only" in errors[0] and "OUTPUT_DIR" in errors[0], log
    assert "model segmentation" not in log and "Traceback" not in log  # refused before talking to Triton


def test_full_file_system_stops_the_run_and_leaves_nothing_of_the_study(triton_server, tmp_path):
    studies(tmp_path / "in", 3, shape=(96, 96, 40))
    with tmpfs(tmp_path / "out", "size=512k") as out:
        (out / "filler").write_bytes(bytes(400 * 1024))  # leaves room for the write check, not for a study
        proc = run_operator(tmp_path / "in", out, triton_server.grpc_url)
        names = sorted(p.name for p in out.iterdir())
    log = proc.stdout
    assert proc.returncode == 1, log
    errors = error_lines(log)
    assert len(errors) == 1 and "no space left on the device" in errors[0], log
    assert "Traceback" not in log, log
    done = int(re.search(r"(\d) of 3 studies done before", errors[0]).group(1))
    assert done == log.count(" done study"), log
    # The studies done are complete; of the one that hit the full disk nothing remains (no segmentation
    # without its report), and no temporary file.
    expected = ["filler"] + [f"study{i}{s}" for i in range(done) for s in (".json", "_overlay.png", "_seg.nii.gz")]
    assert names == sorted(expected), names


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_run_cleans_up(triton_server, tmp_path, sig, code):
    studies(tmp_path / "in", 3, shape=(200, 200, 90))
    out = tmp_path / "out"
    op = RunningOperator(tmp_path / "in", out, triton_server.grpc_url, TRITON_TRANSPORT="shm")
    op.wait_for("transport shm")
    time.sleep(1.0)  # inside the first study's inference
    assert own_shm_files(op.proc.pid), "the regions exist while the operator runs"
    op.proc.send_signal(sig)
    assert op.finish(timeout=60) == code, op.log
    log = op.log
    errors = error_lines(log)
    assert len(errors) == 1 and f"stopped by {sig.name}" in errors[0], log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    assert own_shm_files(op.proc.pid) == []
    registered = _registered(triton_server.grpc_url)
    assert not [r for r in registered if r.startswith(f"odk_{op.proc.pid}_")], f"{registered}\n{log}"
    assert leftovers(out) == []
    _complete_or_absent(out, [f"study{i}" for i in range(3)])


def _registered(grpc_url: str) -> list[str]:
    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        return [r.name for r in client.get_system_shared_memory_status(client_timeout=10).regions.values()]
    finally:
        client.close()


def test_regions_of_a_killed_operator_are_unregistered_by_the_next_run(triton_server, tmp_path):
    studies(tmp_path / "in", 2, shape=(200, 200, 90))
    op = RunningOperator(tmp_path / "in", tmp_path / "out", triton_server.grpc_url, TRITON_TRANSPORT="shm")
    op.wait_for("transport shm")
    killed = op.proc.pid
    op.proc.kill()  # SIGKILL: no clean-up of its own is possible
    op.finish(timeout=30)
    deadline = time.monotonic() + 10
    while own_shm_files(killed) and time.monotonic() < deadline:  # the resource tracker unlinks them
        time.sleep(0.2)
    assert [r for r in _registered(triton_server.grpc_url) if r.startswith(f"odk_{killed}_")], \
        "the killed operator's regions stay registered in Triton"
    (tmp_path / "in2").mkdir()
    studies(tmp_path / "in2", 1, shape=(64, 64, 24))
    proc = run_operator(tmp_path / "in2", tmp_path / "out2", triton_server.grpc_url, TRITON_TRANSPORT="shm")
    assert proc.returncode == 0, proc.stdout
    assert "left in Triton by an operator that was killed" in proc.stdout, proc.stdout
    assert not [r for r in _registered(triton_server.grpc_url) if r.startswith(f"odk_{killed}_")]
    assert own_shm_files(killed) == []


def test_timeout_mid_run_unwinds_before_exit_124(triton_server, tmp_path):
    """NVIDIA_CLARA_TIMEOUT mid-inference: the driver fails the operator with 124, and the work still running
    in the handler's thread is stopped as by a signal, so its regions are released and nothing staged stays."""
    studies(tmp_path / "in", 3, shape=(200, 200, 90))
    out = tmp_path / "out"
    op = RunningOperator(tmp_path / "in", out, triton_server.grpc_url, TRITON_TRANSPORT="shm",
                         NVIDIA_CLARA_TIMEOUT="4")
    assert op.finish(timeout=90) == 124, op.log
    log = op.log
    errors = error_lines(log)
    assert len(errors) == 1 and "execute handler still running after 4s (NVIDIA_CLARA_TIMEOUT)" in errors[0], log
    assert "transport shm" in log, log  # the timeout came during the work, not before it
    assert own_shm_files(op.proc.pid) == []
    registered = _registered(triton_server.grpc_url)
    assert not [r for r in registered if r.startswith(f"odk_{op.proc.pid}_")], f"{registered}\n{log}"
    assert leftovers(out) == []
    _complete_or_absent(out, [f"study{i}" for i in range(3)])
