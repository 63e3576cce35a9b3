"""The kept jobs of the listener, by hand: `make listen-retry|listen-resend|listen-discard JOB=<job>` and
`make listen-prune`.

    python -m kit.dicom.jobctl retry|resend|discard JOB --run-dir .run/listen
    python -m kit.dicom.jobctl prune --run-dir .run/listen --keep-days 7

retry queues the job again (its kept instances in input/) for the running listener (woken with SIGUSR1),
else for the next `make listen`; resend runs register-results alone on the kept results (kit.dicom.delivery);
discard removes a job that nothing works on; prune removes settled jobs older than LISTEN_KEEP_DAYS.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from pathlib import Path

from kit.dicom import procgroup
from kit.dicom.jobs import SETTLED_STATES, Job, utc_now
from kit.dicom.pacs import running_destination
from kit.dicom.retention import DEFAULT_KEEP_DAYS, prune
from kit.dicom.runstate import read_state
from kit.paths import run_dir
from kit.pipeline.model import PipelineError
from kit.procs import pid_alive

RETRYABLE = ("failed", "delivery-failed", "incomplete")


class JobError(Exception):
    """One line saying why the command cannot do its job, and what to do."""


def listener_pid(listen_dir: Path) -> int:
    pid = int(read_state(listen_dir).get("pid", "0") or 0)
    return pid if pid and pid_alive(pid) else 0


def load(listen_dir: Path, name: str) -> Job:
    if not name or "/" in name or name.startswith("."):
        raise JobError("give the job: JOB=<job> (its folder name; 'make listen-status' lists them)")
    folder = listen_dir / "jobs" / name
    try:
        return Job.load(folder)
    except (OSError, ValueError):
        raise JobError(f"no job {name} in {listen_dir / 'jobs'} ('make listen-status' lists the jobs)") from None


def busy(job: Job, listen_dir: Path) -> str:
    """Why a job is not to be touched now, else ''."""
    if procgroup.members(job.folder):
        return f"job {job.name} is running (its pipeline's processes are alive)"
    if listener_pid(listen_dir) and job.status.state in ("receiving", "queued", "running"):
        return f"job {job.name} is {job.status.state} in the running listener"
    return ""


def retry(listen_dir: Path, name: str) -> str:
    job = load(listen_dir, name)
    why = busy(job, listen_dir)
    if why:
        raise JobError(f"{why}; wait for it to end ('make listen-status')")
    if job.status.state not in RETRYABLE:
        hint = " (its results are in the PACS; 'make listen-resend' sends them again)" \
            if job.status.state == "succeeded" else ""
        raise JobError(f"job {name} is {job.status.state}{hint}; retry runs a job that is "
                       f"{', '.join(RETRYABLE)}")
    if not any(job.input_dir.rglob("*.dcm")):
        raise JobError(f"job {name} kept no instances in {job.input_dir}; send the study again")
    job.update(state="queued", started_at="", finished_at="",
               reason=f"retry requested at {utc_now()} (make listen-retry); it was {job.status.state}: "
                      f"{job.status.reason}")
    pid = listener_pid(listen_dir)
    if pid:
        os.kill(pid, signal.SIGUSR1)
        return f"job {name} queued again; the running listener (pid {pid}) runs it ('make listen-status')"
    return f"job {name} queued again; the next 'make listen' runs it"


def resend(listen_dir: Path, name: str, destination: str, pacs_dir: Path) -> str:
    from kit.dicom.delivery import resend as run_delivery

    job = load(listen_dir, name)
    why = busy(job, listen_dir)
    if why:
        raise JobError(f"{why}; wait for it to end ('make listen-status')")
    if job.status.state not in ("delivery-failed", "succeeded"):
        raise JobError(f"job {name} is {job.status.state}: it has no results to send; "
                       f"'make listen-retry JOB={name}' runs it again")
    if not destination:
        destination = read_state(listen_dir).get("destination", "") if listener_pid(listen_dir) else ""
    if not destination:
        pacs = running_destination(pacs_dir)
        destination = str(pacs) if pacs is not None else ""
    if not destination:
        raise JobError("no destination: set DICOM_DESTINATION=AET@host:port, or start 'make pacs'")
    before = job.status.state
    try:
        failure = run_delivery(job, destination)
    except PipelineError as exc:
        raise JobError(str(exc)) from None
    if failure:
        job.update(state="delivery-failed", finished_at=utc_now(),
                   reason=f"{failure}; the results are kept in output/: 'make listen-resend JOB={name}' sends "
                          "them again")
        raise JobError(f"job {name}: results not delivered to {destination}: {failure}")
    job.update(state="succeeded", finished_at=utc_now(),
               reason=f"results sent again to {destination} at {utc_now()} (make listen-resend; was {before})")
    return f"job {name}: results delivered to {destination}; the job succeeded"


def discard(listen_dir: Path, name: str) -> str:
    job = load(listen_dir, name)
    why = busy(job, listen_dir)
    if why:
        raise JobError(f"{why}; 'make listen-stop' first, or wait for it to end")
    count = sum(1 for _ in job.input_dir.rglob("*.dcm"))
    shutil.rmtree(job.folder)
    return f"job {name} removed ({job.status.state}, {count} instance(s), {job.folder})"


def prune_jobs(listen_dir: Path, keep_days: float) -> list[str]:
    if keep_days <= 0:
        return ["LISTEN_KEEP_DAYS=0: jobs are kept forever; nothing removed"]
    removed = prune(listen_dir / "jobs", keep_days)
    lines = [f"removed {p.job} ({p.state}, finished {p.finished_at or 'at an unknown time'})" for p in removed]
    lines.append(f"listen-prune: removed {len(removed)} job(s) settled ({', '.join(SETTLED_STATES)}) more than "
                 f"{keep_days:g} day(s) ago from {listen_dir / 'jobs'}; queued, running and receiving jobs stay")
    return lines


def keep_days_from(text: str) -> float:
    try:
        days = float(text) if text != "" else DEFAULT_KEEP_DAYS
    except ValueError:
        raise JobError(f"LISTEN_KEEP_DAYS must be a number of days (0: keep forever), not {text!r}") from None
    if days < 0:
        raise JobError(f"LISTEN_KEEP_DAYS must be >= 0 (0: keep forever), not {text!r}")
    return days


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kit.dicom.jobctl", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("retry", "resend", "discard", "prune"))
    ap.add_argument("job", nargs="?", default="")
    ap.add_argument("--run-dir", type=Path, default=run_dir() / "listen")
    ap.add_argument("--pacs-run-dir", type=Path, default=run_dir() / "pacs")
    ap.add_argument("--destination", default="")
    ap.add_argument("--keep-days", default="")
    args = ap.parse_args(argv)
    try:
        if args.command == "prune":
            lines = prune_jobs(args.run_dir, keep_days_from(args.keep_days))
        elif args.command == "retry":
            lines = [retry(args.run_dir, args.job)]
        elif args.command == "resend":
            lines = [resend(args.run_dir, args.job, args.destination, args.pacs_run_dir)]
        else:
            lines = [discard(args.run_dir, args.job)]
    except JobError as exc:
        print(f"[odk] error: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(f"[odk] {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
