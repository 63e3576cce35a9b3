"""What a listener finds at start in the jobs an earlier one left: a crash (``kill -9``, power loss) leaves
jobs ``running`` with their pipelines still going, complete studies ``queued``, studies half received.

- running: the pipeline's processes still alive (its recorded process group, checked against the job's marker
  in their environment) are ended; a job whose results had been delivered (a register-report.json in its
  output/ that says every object was stored) is succeeded, any other is queued to run again.
- queued: the study was completely received (its sender was told "stored"): it runs.
- receiving: its association(s) ended with the listener, so it may be partial: held as ``incomplete``
  (`make listen-retry JOB=` runs it, `make listen-discard JOB=` removes it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from kit.dicom import procgroup
from kit.dicom.jobs import Job, read_jobs, utc_now
from kit.procs import pid_alive

REPORT_NAME = "register-report.json"  # what register-results writes (app.dicom.register)


def delivered(job: Job) -> bool:
    """The job's register-results said every object reached every destination."""
    reports = sorted(job.output_dir.glob(f"*/*/{REPORT_NAME}")) + sorted(job.output_dir.glob(f"*/{REPORT_NAME}"))
    if not reports:
        return False
    for path in reports:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if report.get("skipped"):
            continue
        destinations = report.get("destinations") or []
        if not destinations or not all(d.get("ok") for d in destinations):
            return False
    return True


def recover(jobs_dir: Path, log: Callable[[str], None], grace_s: float = 5.0) -> list[Job]:
    """Settle what an earlier listener left; returns the jobs to run now (state queued), oldest first."""
    to_run: list[Job] = []
    for status in read_jobs(jobs_dir):
        folder = jobs_dir / status.get("job", "")
        state = status.get("state")
        if state not in ("running", "queued", "receiving"):
            continue
        try:
            job = Job.load(folder)
        except (OSError, ValueError) as exc:
            log(f"job {folder.name}: cannot read its status ({exc}); left as it is")
            continue
        recorded = procgroup.recorded(folder)
        if recorded and recorded.listener_pid != os.getpid() and pid_alive(recorded.listener_pid):
            log(f"job {job.name}: run by another live listener (pid {recorded.listener_pid}); left to it")
            continue
        if state == "running":
            ended = procgroup.end(folder, grace_s)
            procgroup.forget(folder)
            if ended:
                group = f"process group {recorded.pgid}" if recorded else "no process group recorded"
                log(f"job {job.name}: ended {len(ended)} process(es) of its pipeline ({group}) that an earlier "
                    "listener left running")
            if delivered(job):
                job.update(state="succeeded", finished_at=job.status.finished_at or utc_now(),
                           reason="finished while no listener watched it; its register-report.json says every "
                                  "object was delivered")
                log(f"job {job.name}: succeeded (its results had been delivered before the listener ended)")
                continue
            job.update(state="queued", started_at="", finished_at="",
                       reason="the listener ended while the job was running; it runs again")
            log(f"job {job.name}: interrupted while running; queued to run again")
            to_run.append(job)
        elif state == "queued":
            log(f"job {job.name}: completely received before the listener ended; queued")
            to_run.append(job)
        else:
            job.update(state="incomplete", finished_at=utc_now(),
                       reason=f"the listener ended while receiving it ({job.status.instances} instance(s) kept in "
                              f"input/); 'make listen-retry JOB={job.name}' runs it, 'make listen-discard "
                              f"JOB={job.name}' removes it")
            log(f"job {job.name}: incomplete: the listener ended while receiving it; instances kept")
    return to_run
