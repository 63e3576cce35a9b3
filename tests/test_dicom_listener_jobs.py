"""The listener owns its jobs (kit/dicom/runner.py, procgroup.py, recovery.py, jobctl.py), with real dcmtk and
pynetdicom peers and the inventory test pipeline: `make listen-stop` while a job runs and an association is
still sending leaves no process and is quick; job folders are private; `make listen-prune` removes old settled
jobs only; `make listen-discard` refuses a running job; a restart runs the studies left queued.

The liver pipeline with Orthanc and Triton (crash recovery, delivery, retry): tests/test_dicom_delivery.py.
"""

from __future__ import annotations

import json
import os
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pydicom
import pytest
from container_helpers import ROOT, check, make, one_error_line, output_of
from dicom_net_helpers import (
    Listener,
    job_status,
    jobs,
    port_free,
    processes_mentioning,
    require_tools,
    running_listener,
    storescu,
    wait_for,
    wait_jobs,
    write_ct_series,
)
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from kit.dicom import procgroup

T = TypeVar("T")
PIPELINE = ROOT / "tests" / "data" / "listener" / "inventory-pipeline.yml"


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_tools()


def running_job(listener: Listener, timeout: float = 60) -> tuple[dict, procgroup.RunState]:
    """The one running job and its recorded process group, once its operator runs."""
    def found() -> tuple[dict, procgroup.RunState] | None:
        for job in jobs(listener):
            rec = procgroup.recorded(listener.jobs_dir / job["job"])
            folder = listener.jobs_dir / job["job"]
            if job["state"] == "running" and rec and (folder / "logs" / "inventory.log").is_file() \
                    and len(procgroup.members(folder)) >= 2:  # the pipeline runner and its (warm) operator
                return job, rec
        return None
    return wait_for(found, timeout, "a running job")


def group_alive(pgid: int) -> list[int]:
    """Live, non-zombie processes of process group pgid (as `pgrep -g` lists them)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            alive.append(int(entry.name))
    return alive


def test_stop_while_a_job_runs_and_an_association_sends(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    write_ct_series(tmp_path / "a", slices=4)
    write_ct_series(tmp_path / "b", slices=6)
    files_b = sorted((tmp_path / "b").iterdir())
    run_dir = tmp_path / "run"
    with running_listener(run_dir, PIPELINE, pytestconfig, LISTEN_PARAMS="HOLD_S=300") as listener:
        pid = int((run_dir / "listen" / "listen.pid").read_text())
        assert storescu(tmp_path / "a", listener.port).returncode == 0
        job_a, rec = running_job(listener)
        assert rec.pgid and rec.listener_pid == pid and group_alive(rec.pgid)
        assert set(procgroup.members(listener.jobs_dir / job_a["job"], rec.pgid)) <= set(group_alive(rec.pgid))

        # a second caller still sending its study: 2 of its 6 instances stored, the association kept open
        ae = AE(ae_title="SLOWSCU")
        ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
        assoc = ae.associate("127.0.0.1", listener.port, ae_title="ODK")
        assert assoc.is_established
        try:
            for path in files_b[:2]:
                assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0x0000
            start = time.monotonic()
            stopped = make("listen-stop", pytestconfig, env=listener.env)
            took = time.monotonic() - start
            aborted = assoc.is_aborted  # the listener aborted it: nothing more can be stored
        finally:
            if assoc.is_established:
                assoc.abort()
    assert stopped.returncode == 0, output_of(stopped)
    print(f"make listen-stop took {took:.1f} s")
    assert "did not stop within" not in stopped.stderr, output_of(stopped)
    assert took < 20, took  # generous: the listener ends its pipelines within LISTEN_STOP_GRACE_S (3 s)
    assert aborted, "the listener left the association open after it was told to stop"
    # nothing left: the listener, its job's whole process group, anything mentioning the run dir; port free
    assert not Path(f"/proc/{pid}").exists()
    assert group_alive(rec.pgid) == []
    assert processes_mentioning(str(run_dir)) == []
    assert procgroup.members(listener.jobs_dir / job_a["job"]) == []  # nothing carries the job's marker
    assert port_free(listener.port)
    assert not (listener.jobs_dir / job_a["job"] / procgroup.RUN_STATE).exists()
    states = {j["study_instance_uid"]: j for j in jobs(listener)}
    a = states[pydicom.dcmread(files_b[0].parent.parent / "a" / "IM0000").StudyInstanceUID]
    b = states[pydicom.dcmread(files_b[0]).StudyInstanceUID]
    assert a["state"] == "failed" and "listener stopped while the job was running" in a["reason"], a
    assert f"make listen-retry JOB={a['job']}" in a["reason"], a
    assert b["state"] == "incomplete" and b["instances"] == 2, b
    assert len(list((listener.jobs_dir / b["job"] / "input").rglob("*.dcm"))) == 2
    log = listener.log.read_text()
    assert "1 open association(s) aborted" in log and f"job {b['job']}: incomplete" in log, log


def modes(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {"dirs": set(), "files": set()}
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        kind = "dirs" if path.is_dir() else "files"
        found[kind].add(oct(stat.S_IMODE(path.stat().st_mode)))
    return found


def backdate(listener: Listener, name: str, days: float) -> None:
    path = listener.jobs_dir / name / "status.json"
    status = json.loads(path.read_text())
    old = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for key in ("received_at", "started_at", "finished_at"):
        if status[key]:
            status[key] = old
    path.write_text(json.dumps(status))


def test_private_job_folders_prune_discard_and_queued_jobs_run_at_start(tmp_path: Path,
                                                                        pytestconfig: pytest.Config) -> None:
    for name, slices in (("a", 3), ("b", 4), ("c", 5), ("d", 2)):
        write_ct_series(tmp_path / name, slices=slices)
    run_dir = tmp_path / "run"
    port = None
    with running_listener(run_dir, PIPELINE, pytestconfig) as listener:
        port = listener.port
        assert storescu(tmp_path / "a", listener.port).returncode == 0
        (a,) = wait_jobs(listener, 1, timeout=120)
        assert a["state"] == "succeeded", a
        # PHI: the jobs, their instances and everything the pipeline wrote: this user's only
        got = modes(listener.jobs_dir)
        assert got == {"dirs": {"0o700"}, "files": {"0o600"}}, got
        assert stat.S_IMODE((run_dir / "listen").stat().st_mode) == 0o700

    with running_listener(run_dir, PIPELINE, pytestconfig, port=port, LISTEN_PARAMS="HOLD_S=300") as listener:
        assert storescu(tmp_path / "b", listener.port).returncode == 0
        b, _ = running_job(listener)
        assert storescu(tmp_path / "c", listener.port).returncode == 0  # queued behind b (one worker)
        c = wait_for(lambda: [j for j in jobs(listener) if j["state"] == "queued"], 30, "a queued job")[0]
        refused = make("listen-discard", pytestconfig, env=listener.env, JOB=b["job"])
        line = one_error_line(refused)
        assert f"job {b['job']} is running" in line, line
        check(make("listen-stop", pytestconfig, env=listener.env))
    assert job_status(listener, b["job"])["state"] == "failed"
    assert job_status(listener, c["job"])["state"] == "queued"  # complete: it runs at the next start

    for name in (a["job"], b["job"], c["job"]):
        backdate(listener, name, days=10)
    kept = make("listen-prune", pytestconfig, env=listener.env, LISTEN_KEEP_DAYS="0")
    assert kept.returncode == 0 and "kept forever" in kept.stderr, output_of(kept)
    pruned = make("listen-prune", pytestconfig, env=listener.env)  # the default, 7 days
    assert pruned.returncode == 0, output_of(pruned)
    assert f"removed {a['job']} (succeeded" in pruned.stderr and f"removed {b['job']} (failed" in pruned.stderr
    assert "removed 2 job(s)" in pruned.stderr, output_of(pruned)
    assert not (listener.jobs_dir / a["job"]).exists() and not (listener.jobs_dir / b["job"]).exists()
    assert (listener.jobs_dir / c["job"]).is_dir()  # queued: never pruned

    with running_listener(run_dir, PIPELINE, pytestconfig, port=port) as listener:
        done = wait_for(lambda: job_status(listener, c["job"])["state"] == "succeeded", 120, "the queued job")
        assert done
        assert storescu(tmp_path / "d", listener.port).returncode == 0
        d = wait_for(lambda: [j for j in jobs(listener) if j["instances"] == 2 and j["state"] == "succeeded"],
                     120, "job d")[0]
        gone = make("listen-discard", pytestconfig, env=listener.env, JOB=d["job"])
        assert gone.returncode == 0 and f"job {d['job']} removed (succeeded, 2 instance(s)" in gone.stderr
        assert not (listener.jobs_dir / d["job"]).exists()
        unknown = make("listen-discard", pytestconfig, env=listener.env, JOB="nope")
        assert "no job nope" in one_error_line(unknown)
        assert "give the job: make listen-retry JOB=" in one_error_line(make("listen-retry", pytestconfig,
                                                                              env=listener.env))
        log = listener.log.read_text()
    assert f"job {c['job']}: completely received before the listener ended; queued" in log, log
    assert os.listdir(listener.jobs_dir) == [c["job"]]
