"""Fault injection on a real embedded Triton of the test's own: killed, stopped, restarted mid-run.

The run must stop at once with one line (Triton is gone for every study), within a bound set by the
retries and TRITON_REQUEST_TIMEOUT, with the finished studies' outputs complete and nothing partial.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import pytest
from operator_helpers import RunningOperator, error_lines, leftovers, own_shm_files, studies

from kit.triton.embedded import Handle, start, stop
from kit.triton.readiness import free_ports
from kit.triton.state import Ports


@pytest.fixture
def own_triton(triton_models_dir: Path, tmp_path: Path) -> Iterator[Handle]:
    """An embedded Triton for this test alone (it gets killed or stopped); always stopped at the end."""
    run_dir = tmp_path / "triton-run"
    handle = start(triton_models_dir, Ports(*free_ports(3)), run_dir, timeout=180)
    try:
        yield handle
    finally:
        with contextlib.suppress(ProcessLookupError):  # a stopped server cannot be terminated
            os.killpg(handle.pid, signal.SIGCONT)
        stop(run_dir)


def _first_study_intact(out: Path) -> None:
    for name in ("study0_seg.nii.gz", "study0_overlay.png", "study0.json"):
        assert (out / name).is_file(), name
    assert nib.load(str(out / "study0_seg.nii.gz")).shape == (160, 160, 60)
    others = sorted(p.name for p in out.iterdir() if not p.name.startswith("study0"))
    assert others == [], others  # nothing of the studies after the failure, not even part of one


def test_triton_killed_after_first_study_stops_the_run(own_triton, tmp_path):
    studies(tmp_path / "in", 6)
    out = tmp_path / "out"
    op = RunningOperator(tmp_path / "in", out, own_triton.grpc_url, TRITON_RETRIES="3")
    op.wait_for("done study0")
    os.killpg(own_triton.pid, signal.SIGKILL)
    killed = time.monotonic()
    code = op.finish(timeout=120)
    took = time.monotonic() - killed
    log = op.log
    assert code == 1, log
    errors = error_lines(log)
    assert len(errors) == 1, log
    assert f"Triton at {own_triton.grpc_url}" in errors[0] and "after 3 retries" in errors[0], errors[0]
    assert "1 of 6 studies done before" in errors[0] and "make triton-status" in errors[0], errors[0]
    assert "FAILED" not in log and "Traceback" not in log
    # 3 retries back off 0.5 + 1 + 2 s: the run ends right after, not after five more studies' retries.
    assert took < 30, f"{took:.1f} s\n{log}"
    _first_study_intact(out)
    assert leftovers(out) == [] and own_shm_files(op.proc.pid) == []


@pytest.mark.parametrize("transport", ["shm", "grpc"])
def test_triton_stopped_mid_request_is_bounded_by_the_request_timeout(own_triton, tmp_path, transport):
    studies(tmp_path / "in", 3)
    out = tmp_path / "out"
    op = RunningOperator(tmp_path / "in", out, own_triton.grpc_url, TRITON_TRANSPORT=transport,
                         TRITON_REQUEST_TIMEOUT="8", TRITON_RETRIES="1")
    op.wait_for("done study0")
    os.killpg(own_triton.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        code = op.finish(timeout=120)
    finally:
        os.killpg(own_triton.pid, signal.SIGCONT)
    took = time.monotonic() - stopped
    log = op.log
    assert code == 1, log
    errors = error_lines(log)
    assert len(errors) == 1, log
    assert "did not answer within TRITON_REQUEST_TIMEOUT=8 s (after 1 retries)" in errors[0], errors[0]
    # Two requests of 8 s (+2 s of the operator's own grace each), 0.5 s backoff, and the clean-up calls
    # (at most 5 + 2 s each): about 35 s at worst, where an unbounded call blocked for minutes.
    assert took < 60, f"{took:.1f} s\n{log}"
    _first_study_intact(out)
    assert leftovers(out) == [] and own_shm_files(op.proc.pid) == []


def test_triton_restarted_mid_run_gets_the_regions_registered_again(own_triton, triton_models_dir, tmp_path):
    studies(tmp_path / "in", 3)
    out = tmp_path / "out"
    op = RunningOperator(tmp_path / "in", out, own_triton.grpc_url, TRITON_TRANSPORT="shm", TRITON_RETRIES="7")
    op.wait_for("done study0")
    stop(own_triton.run_dir)
    start(triton_models_dir, own_triton.ports, own_triton.run_dir, timeout=180)
    code = op.finish(timeout=300)
    log = op.log
    assert code == 0, log
    assert "registering them again" in log and "Unable to find" not in log, log
    for i in range(3):
        assert (out / f"study{i}.json").is_file(), log
    assert leftovers(out) == [] and own_shm_files(op.proc.pid) == []


def test_stopping_triton_answers_the_request_in_flight(own_triton):
    """`stop` lets Triton answer what it is running and refuse the rest as a restart does (errors the operator
    retries), instead of its model backends dying under a request ('Failed to process the request')."""
    import threading

    import numpy as np
    import tritonclient.grpc as grpcclient

    from odk.triton import _transient

    client = grpcclient.InferenceServerClient(own_triton.grpc_url)
    batch = np.zeros((4, 1, 96, 96, 96), np.float32)
    answered: list[float] = []
    refused: list[Exception] = []
    done = threading.Event()

    def keep_asking() -> None:
        while not done.is_set():
            inp = grpcclient.InferInput("NV_MODEL_INPUT", list(batch.shape), "FP32")
            inp.set_data_from_numpy(batch)
            try:
                client.infer("segmentation_liver_v1", [inp], client_timeout=60)
                answered.append(time.monotonic())
            except Exception as exc:  # every error is judged below
                refused.append(exc)
                done.wait(0.05)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        deadline = time.monotonic() + 60
        while not answered and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # the next request has reached the server (a batch takes about 0.5 s on 2 cores)
        stopping = time.monotonic()
        stop(own_triton.run_dir)
    finally:
        done.set()
        asker.join(timeout=90)
        client.close()
    assert answered, refused
    assert [str(e) for e in refused if not _transient(e)] == []
    assert answered[-1] > stopping, "the request in flight when stop began was not answered"
