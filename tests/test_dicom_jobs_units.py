"""The listener's job bookkeeping on real folders and real processes: the retry schedule of register-results,
failure reasons from the operators' own logs, what a restart does with the jobs an earlier listener left
(orphaned process groups ended only when they carry the job's marker), retention."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kit.dicom import procgroup
from kit.dicom.jobs import Job, read_jobs, utc_now
from kit.dicom.recovery import delivered, recover
from kit.dicom.retention import prune
from kit.dicom.runner import failure_reason, only_delivery_failed
from odk import ConfigError
from odk.dicom import StoreConfig
from odk.dicom.store import MAX_DELAY_S, backoff


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def schedule(cfg: StoreConfig) -> list[float]:
    clock = Clock()
    waits = []
    for wait in backoff(cfg, clock):
        waits.append(wait)
        clock.now += wait + 0.5  # each attempt takes half a second
    return waits


def test_backoff_doubles_within_the_retry_time() -> None:
    assert schedule(StoreConfig((), retry_s=20, delay_s=1)) == [0, 1, 2, 4, 8]
    assert schedule(StoreConfig((), retry_s=0)) == [0]
    assert schedule(StoreConfig((), retry_s=1000, delay_s=1, retries=2)) == [0, 1, 2]
    assert max(schedule(StoreConfig((), retry_s=600, delay_s=1))) == MAX_DELAY_S
    cfg = StoreConfig.from_env({"DICOM_RETRY_S": "90", "DICOM_RETRY_DELAY_S": "0.5"})
    assert (cfg.retry_s, cfg.delay_s, cfg.retries) == (90, 0.5, None)
    assert StoreConfig.from_env({}).retry_s == 300
    with pytest.raises(ConfigError, match="DICOM_RETRY_S"):
        StoreConfig.from_env({"DICOM_RETRY_S": "soon"})


def test_failure_reason_names_the_operators_own_error_line(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "segmentation.log").write_text(
        "2026-12-07 10:00:00,000 INFO clara: reading\n"
        "2026-12-07 10:00:01,000 ERROR clara: execute handler failed: cannot reach Triton at 127.0.0.1:1\n"
        "2026-12-07 10:00:01,001 INFO clara: done\n")
    job_log = tmp_path / "job.log"
    job_log.write_text("[odk] error: operator 'segmentation' (exit 1) failed; logs in /x\n")
    assert failure_reason(job_log, 1, logs) == \
        "operator 'segmentation' (exit 1): execute handler failed: cannot reach Triton at 127.0.0.1:1"
    (logs / "segmentation.log").write_text("Killed\n")  # no error line of its own: says where to look
    assert failure_reason(job_log, 1, logs) == "operator 'segmentation' (exit 1) failed (see logs/segmentation.log)"
    job_log.write_text("[odk] error: operator 'register-results' (exit 1) failed; logs in /x\n")
    assert only_delivery_failed(job_log, {"register-results"})
    assert not only_delivery_failed(job_log, {"other"})


def sleeper(marker: Path | None) -> subprocess.Popen[bytes]:
    env = {**os.environ}
    if marker is not None:
        env[procgroup.MARKER] = str(marker)
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env,
                            start_new_session=True)


def test_restart_ends_orphans_that_are_ours_and_settles_each_state(tmp_path: Path) -> None:
    running = Job.create(tmp_path, "ODK-p-run", "1.1", "A", "def/p.yml")
    running.update(state="running", started_at=utc_now())
    queued = Job.create(tmp_path, "ODK-p-queued", "1.2", "A", "def/p.yml")
    queued.update(state="queued")
    receiving = Job.create(tmp_path, "ODK-p-recv", "1.3", "A", "def/p.yml")
    done = Job.create(tmp_path, "ODK-p-done", "1.4", "A", "def/p.yml")
    done.update(state="running")
    report = done.output_dir / "register-results" / "report"
    report.mkdir(parents=True)
    (report / "register-report.json").write_text(json.dumps({"destinations": [{"ok": True}]}))
    assert delivered(done)
    orphan = sleeper(running.folder)
    stranger = sleeper(None)  # its pgid recorded for a job, but not ours: never signalled
    try:
        procgroup.record(running.folder, orphan.pid, utc_now())
        procgroup.record(done.folder, stranger.pid, utc_now())
        wait = time.monotonic() + 5
        while not procgroup.members(running.folder) and time.monotonic() < wait:
            time.sleep(0.05)
        lines: list[str] = []
        to_run = recover(tmp_path, lines.append, grace_s=2)
        assert orphan.wait(timeout=5) is not None
        assert stranger.poll() is None
    finally:
        for proc in (orphan, stranger):
            proc.kill()
            proc.wait()
    assert sorted(j.name for j in to_run) == ["ODK-p-queued", "ODK-p-run"]
    states = {s["job"]: s["state"] for s in read_jobs(tmp_path)}
    assert states == {"ODK-p-run": "queued", "ODK-p-queued": "queued", "ODK-p-recv": "incomplete",
                      "ODK-p-done": "succeeded"}
    assert not (running.folder / procgroup.RUN_STATE).exists()
    assert any(f"job ODK-p-run: ended 1 process(es) of its pipeline (process group {orphan.pid})" in line
               for line in lines), lines
    assert receiving.name in " ".join(lines)


def test_prune_removes_old_settled_jobs_only(tmp_path: Path) -> None:
    for name, state in (("old-ok", "succeeded"), ("old-failed", "failed"), ("old-queued", "queued"),
                        ("old-running", "running"), ("old-incomplete", "incomplete"), ("new-ok", "succeeded")):
        job = Job.create(tmp_path, name, "1.1", "A", "p.yml")
        old = "2020-01-01T00:00:00.000000Z" if name.startswith("old") else utc_now()
        job.update(state=state, received_at=old, finished_at=old if state != "queued" else "")
    assert prune(tmp_path, 0) == []
    gone = prune(tmp_path, 7)
    assert sorted(p.job for p in gone) == ["old-failed", "old-incomplete", "old-ok"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new-ok", "old-queued", "old-running"]


def test_a_queued_job_superseded_before_it_ran_is_not_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """More of a study arrived while its first job waited in the queue: that job publishes nothing (its
    follow-up runs the whole study), on a real runner whose pipeline would leave a file if it ran."""
    from kit.dicom.runner import JobRunner, PipelineCommand

    monkeypatch.setenv("ODK_WARM_START", "0")
    pipeline = Path(__file__).resolve().parent / "data" / "listener" / "inventory-pipeline.yml"
    first = Job.create(tmp_path, "ODK-p-1", "1.2", "CT1", str(pipeline))
    first.update(superseded_by="ODK-p-2")
    lines: list[str] = []
    runner = JobRunner(PipelineCommand(pipeline, "host", "", "odk", (), ()), 1, lines.append, lambda: None)
    try:
        runner.run(first)
    finally:
        runner.stop()
    status = json.loads((first.folder / "status.json").read_text())
    assert status["state"] == "superseded" and "ODK-p-2" in status["reason"]
    assert not first.output_dir.exists() and not first.log_path.exists()
    assert lines == ["job ODK-p-1: superseded by ODK-p-2 before it ran; not run"]
