"""The DICOM listener (``make listen``): a Storage SCP whose complete studies become pipeline jobs.

    python -m kit.dicom.listen serve --run-dir .run/listen --aet ODK --port 11112 --pipeline def/...yml
    python -m kit.dicom.listen wait|status --run-dir .run/listen
serve runs in the foreground until SIGTERM/SIGINT (scripts/listen.sh runs it in the background); it
writes <run-dir>/state (key=value lines) once it accepts associations, and removes it when it stops.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from kit.dicom import status as status_view
from kit.dicom.collector import StudyCollector
from kit.dicom.config import (
    DEFAULT_IDLE_S,
    MAX_PDU,
    ConfigError,
    Destination,
    DoorSettings,
    ListenerConfig,
    parse_allow_list,
    parse_destinations,
)
from kit.dicom.door import Limits
from kit.dicom.jobs import Job, job_name, read_jobs, utc_now
from kit.dicom.pacs import running_destination
from kit.dicom.recovery import recover
from kit.dicom.retention import DEFAULT_KEEP_DAYS, prune
from kit.dicom.runner import STOP_GRACE_S, JobRunner, PipelineCommand
from kit.dicom.runstate import STATE_FILE
from kit.dicom.scp import StorageSCP, Timeouts
from kit.paths import run_dir
from kit.pipeline.model import PipelineError, load_pipeline
from kit.pipeline.run import local_triton
from kit.pipeline.triton_hint import triton_warning

_log_lock = threading.Lock()
# control characters a peer may have put in a value (a UID, an AE title) are written escaped: one message is
# one line of the log, never a forged second one
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}


def log(message: str) -> None:
    """One line of listen.log; never raises (a full disk must not stop the listener)."""
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    with _log_lock, contextlib.suppress(OSError, ValueError):
        print(f"[odk] {stamp} {message.translate(_ESCAPES)}", file=sys.stderr, flush=True)


def quiet_libraries() -> None:
    """Warnings of pydicom and pynetdicom go to the log as escaped lines of their own (a received value in them
    can hold a newline); pydicom does not check what it reads (the listener checks, kit/dicom/intake.py)."""
    import logging
    import warnings

    import pydicom

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    warnings.showwarning = lambda message, category, *_a, **_k: log(f"warning: {category.__name__}: {message}")
    logging.getLogger("pynetdicom").propagate = False  # its own NullHandler: nothing on stderr
    logging.getLogger("pydicom").propagate = False


def triton_hint() -> str | None:
    """A warning when the jobs will find no Triton: the address they will use, where it comes from, what to do."""
    return triton_warning(local_triton())


def destination_text(destinations: tuple[Destination, ...]) -> str:
    """DICOM_DESTINATION as the operators read it: ``AET@host:port`` entries, comma-separated."""
    return ",".join(map(str, destinations))


def pipeline_command(cfg: ListenerConfig) -> tuple[PipelineCommand, str]:
    bad = [p for p in cfg.extra_params if "=" not in p]
    if bad:
        raise ConfigError(f"pipeline parameter {bad[0]!r} is not NAME=VALUE")
    pipeline = load_pipeline(cfg.pipeline, dict(p.split("=", 1) for p in cfg.extra_params))
    params = list(cfg.extra_params)
    env: list[tuple[str, str]] = []
    destinations = destination_text(cfg.destinations)
    if destinations:
        env.append(("DICOM_DESTINATION", destinations))
        if "DICOM_DESTINATION" in pipeline.parameters:
            params.append(f"DICOM_DESTINATION={destinations}")
    command = PipelineCommand(cfg.pipeline.resolve(), cfg.runtime, cfg.engine, cfg.image, tuple(params), tuple(env))
    return command, pipeline.name


def write_state(cfg: ListenerConfig, pipeline_name: str) -> None:
    lines = [f"pid={os.getpid()}", f"aet={cfg.aet}", f"host={cfg.host}", f"port={cfg.port}",
             f"idle_s={cfg.idle_s:g}", f"pipeline={cfg.pipeline}", f"pipeline_name={pipeline_name}",
             f"destination={destination_text(cfg.destinations)}", f"allowed_aets={','.join(cfg.allowed_aets)}",
             f"runtime={cfg.runtime}", f"max_associations={cfg.door.max_associations}",
             f"max_per_caller={cfg.door.max_per_caller}", f"min_free_mb={cfg.door.min_free_mb}",
             f"started_at={utc_now()}"]
    tmp = cfg.run_dir / f".{STATE_FILE}.part"
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, cfg.run_dir / STATE_FILE)


def start_housekeeping(jobs_dir: Path, keep_days: float) -> list[Job]:
    """Job folders are patient data: private to this user (umask 077 for the listener and its jobs), settled
    jobs older than keep_days removed; then what an earlier listener left (kit.dicom.recovery): returns the
    jobs to run."""
    os.umask(0o077)
    jobs_dir.mkdir(parents=True, exist_ok=True)
    jobs_dir.chmod(0o700)
    for gone in prune(jobs_dir, keep_days):
        log(f"job {gone.job}: removed ({gone.state}, finished {gone.finished_at}; LISTEN_KEEP_DAYS={keep_days:g})")
    return recover(jobs_dir, log)


def queued_jobs(jobs_dir: Path) -> list[Job]:
    """Jobs queued on disk (by `make listen-retry`), oldest first."""
    found = []
    for status in read_jobs(jobs_dir):
        if status.get("state") == "queued":
            try:
                found.append(Job.load(jobs_dir / status["job"]))
            except (OSError, ValueError, KeyError):
                continue
    return found


def serve(cfg: ListenerConfig, keep_days: float = DEFAULT_KEEP_DAYS, stop_grace_s: float = STOP_GRACE_S) -> int:
    command, pipeline_name = pipeline_command(cfg)
    quiet_libraries()
    leftover = start_housekeeping(cfg.jobs_dir, keep_days)
    stop = threading.Event()
    rescan = threading.Event()  # SIGUSR1 from `make listen-retry`: a job was queued on disk

    def new_job(study_uid: str, calling_aet: str) -> Job:
        job = Job.create(cfg.jobs_dir, job_name(cfg.aet, pipeline_name), study_uid, calling_aet, str(cfg.pipeline))
        log(f"job {job.name}: receiving study {study_uid} from {calling_aet}")
        return job

    collector = StudyCollector(cfg.idle_s, new_job, log)
    for job in collector.adopt(cfg.jobs_dir):
        log(f"job {job.name}: still held incomplete ({job.status.instances} instance(s) of study "
            f"{job.status.study_instance_uid}); more of the study joins it")

    def on_signal(*_: object) -> None:
        stop.set()
        collector.wake.set()

    def on_rescan(*_: object) -> None:
        rescan.set()
        collector.wake.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGUSR1, on_rescan)
    runner = JobRunner(command, cfg.workers, log, triton_hint)
    door = cfg.door
    limits = Limits(MAX_PDU, door.max_associations, door.max_per_caller, door.max_connections)
    timeouts = Timeouts(door.acse_timeout_s, door.dimse_timeout_s, door.network_timeout_s)
    clear_incoming(cfg)
    tempfile.tempdir = str(cfg.incoming_dir)  # pynetdicom streams received instances to temporary files
    scp = StorageSCP(cfg.aet, cfg.allowed_aets, collector, log, limits, timeouts, cfg.incoming_dir, door.min_free_mb)
    try:
        scp.start(cfg.host, cfg.port, cfg.tls)
    except OSError as exc:
        runner.stop()
        print(f"[odk] error: cannot listen on {cfg.host}:{cfg.port} ({exc}); stop what uses it or set "
              "LISTEN_PORT", file=sys.stderr)
        return 1
    write_state(cfg, pipeline_name)
    log(f"listening as {cfg.aet} on {cfg.host}:{cfg.port}; a study becomes a job {cfg.idle_s:g} s after its "
        f"last instance; pipeline {cfg.pipeline}; jobs in {cfg.jobs_dir}")
    log(f"results to {destination_text(cfg.destinations)}" if cfg.destinations else
        "no DICOM_DESTINATION and no 'make pacs' running: results stay in each job's output/")
    if cfg.allowed_aets:
        log(f"calling AE titles allowed: {', '.join(cfg.allowed_aets)}")
    log(f"at most {door.max_associations} associations at once ({door.max_per_caller} per calling AE title), "
        f"{door.max_connections} connections; PDUs up to {MAX_PDU} bytes; stores refused below "
        f"{door.min_free_mb} MB free")
    hint = triton_hint()
    if hint:
        log(f"warning: {hint}")
    for job in leftover:
        runner.enqueue(job)
    try:
        next_sweep = 0.0
        while not stop.is_set():
            for job in collector.complete():
                try:
                    runner.submit(job)
                except OSError as exc:  # e.g. the disk is full: the job is kept and queued again later
                    log(f"job {job.name}: cannot be queued now ({exc}); trying again")
                    collector.give_back(job)
            if time.monotonic() >= next_sweep:
                scp.sweep()
                sweep_incoming(cfg, door.network_timeout_s + 5)
                next_sweep = time.monotonic() + 2.0
            if rescan.is_set():
                rescan.clear()
                for job in queued_jobs(cfg.jobs_dir):
                    if runner.enqueue(job):
                        log(f"job {job.name}: queued again by 'make listen-retry'")
            # a closed association is seen at once (LISTEN_IDLE_S=0: the job starts then); the idle time of
            # other studies is checked every 0.2 s
            collector.wait(0.2)
    finally:
        log("stopping: no new associations; open ones are aborted")
        scp.stop()
        for job in collector.drain():
            hold_incomplete(job)
        runner.stop(stop_grace_s)
        (cfg.run_dir / STATE_FILE).unlink(missing_ok=True)
        log("stopped")
    return 0


def clear_incoming(cfg: ListenerConfig) -> None:
    """Partial instances an earlier run was receiving when it stopped (never acknowledged): removed."""
    cfg.incoming_dir.mkdir(parents=True, exist_ok=True)
    for path in cfg.incoming_dir.iterdir():
        with contextlib.suppress(OSError):
            path.unlink()


def sweep_incoming(cfg: ListenerConfig, stale_s: float) -> None:
    """Files of transfers that stopped mid-instance (their association was aborted): removed once stale."""
    now = time.time()
    with contextlib.suppress(OSError):
        for path in cfg.incoming_dir.iterdir():
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > stale_s:
                    path.unlink()


def hold_incomplete(job: Job) -> None:
    """A study still being received when the listener stops may be partial: kept, not run."""
    job.update(state="incomplete", finished_at=utc_now(),
               reason=f"the listener stopped while receiving it ({job.status.instances} instance(s) kept in input/); "
                      f"'make listen-retry JOB={job.name}' runs it, 'make listen-discard JOB={job.name}' removes it")
    log(f"job {job.name}: incomplete: the listener stopped while receiving it; {job.status.instances} instance(s) "
        "kept")


def config_from(args: argparse.Namespace) -> ListenerConfig:
    destinations = parse_destinations(args.destination)
    if not destinations:
        pacs = running_destination(args.pacs_run_dir)
        destinations = (pacs,) if pacs is not None else ()
    return ListenerConfig(
        aet=args.aet, host=args.host, port=args.port, idle_s=args.idle_s, pipeline=args.pipeline,
        run_dir=args.run_dir.resolve(), destinations=destinations,
        allowed_aets=parse_allow_list(args.allowed_aets),
        runtime=args.runtime, engine=args.engine, image=args.image, workers=args.workers,
        extra_params=tuple(args.param),
        door=DoorSettings(args.max_associations, args.max_per_caller, args.max_connections, args.acse_timeout,
                          args.dimse_timeout, args.network_timeout, args.min_free_mb)).check()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    run_root = run_dir()
    ap = argparse.ArgumentParser(prog="python -m kit.dicom.listen", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("serve", "wait", "status"))
    ap.add_argument("--run-dir", type=Path, default=run_root / "listen")
    ap.add_argument("--pacs-run-dir", type=Path, default=run_root / "pacs")
    ap.add_argument("--aet", default="ODK")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=11112)
    ap.add_argument("--idle-s", type=float, default=DEFAULT_IDLE_S)
    ap.add_argument("--pipeline", type=Path, default=Path("def/liver-dicom-pipeline.yml"))
    ap.add_argument("--destination", default="",
                    help="AET@host:port, comma-separated for several (empty: the running `make pacs`)")
    ap.add_argument("--allowed-aets", default="", help="calling AE titles accepted (empty: all)")
    ap.add_argument("--runtime", choices=("auto", "host", "container"), default="host")
    ap.add_argument("--engine", default="")
    ap.add_argument("--image", default=os.environ.get("IMAGE") or "clara/simple-operator")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    d = DoorSettings()
    ap.add_argument("--max-associations", type=int, default=d.max_associations)
    ap.add_argument("--max-per-caller", type=int, default=d.max_per_caller)
    ap.add_argument("--max-connections", type=int, default=d.max_connections)
    ap.add_argument("--acse-timeout", type=float, default=d.acse_timeout_s, help="seconds")
    ap.add_argument("--dimse-timeout", type=float, default=d.dimse_timeout_s, help="seconds")
    ap.add_argument("--network-timeout", type=float, default=d.network_timeout_s, help="seconds")
    ap.add_argument("--min-free-mb", type=int, default=d.min_free_mb)
    ap.add_argument("--keep-days", type=float, default=DEFAULT_KEEP_DAYS,
                    help="settled jobs older than this are removed at start (0: kept forever)")
    ap.add_argument("--stop-grace-s", type=float, default=STOP_GRACE_S,
                    help="seconds a running pipeline gets after SIGTERM when the listener stops")
    ap.add_argument("--timeout", type=float, default=30.0, help="wait: seconds")
    ap.add_argument("--pid", type=int, default=0, help="wait: give up when this process ends")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "status":
        return status_view.show(args.run_dir)
    if args.command == "wait":
        why = status_view.wait_echo(args.run_dir, args.pid, args.timeout)
        if why:
            print(f"[odk] error: {why}; its log: {args.run_dir / 'listen.log'}", file=sys.stderr)
            return 1
        return 0
    try:
        cfg = config_from(args)
        if args.keep_days < 0 or args.stop_grace_s < 0:
            raise ConfigError("LISTEN_KEEP_DAYS and LISTEN_STOP_GRACE_S must be >= 0")
        return serve(cfg, args.keep_days, args.stop_grace_s)
    except (ConfigError, PipelineError) as exc:
        print(f"[odk] error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
