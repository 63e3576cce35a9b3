"""Runs each complete study's job: ``python -m kit.pipeline.run`` (the wiring of ``make run-pipeline``) on
the job's input/ -> output/, its output in job.log, its outcome in status.json and the listener's log.

Each pipeline leads its own process group, recorded in <job>/run.state while it runs (kit.dicom.procgroup);
the runner ends whole groups when it stops. A pipeline that failed only in its delivery operator
(register-results) leaves the job ``delivery-failed``: its results stay in output/ for `make listen-resend`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kit.dicom import procgroup
from kit.dicom.jobs import Job, utc_now
from kit.dicom.recovery import delivered
from kit.paths import ROOT
from kit.warm import client as warm

# The operator that sends the results (its failure leaves them kept, ready to be sent again).
DELIVERY_MODULE = "app.dicom.register"
STOP_GRACE_S = 3.0  # SIGTERM -> SIGKILL of a running pipeline's group when the listener stops
FAILED_OPS_RE = re.compile(r"operator (.*) failed; logs in ")
OP_NAME_RE = re.compile(r"'([^']+)' \(exit (\d+)\)")
# an operator's log line: python logging's "<date> <time> ERROR <logger>: <message>", or "[odk] error: ..."
ERROR_LINE_RE = re.compile(r"\b(error|ERROR|CRITICAL|FATAL)\b")
LOG_PREFIX_RE = re.compile(r"^(\d{4}-\d\d-\d\d[ T][\d:,.]+\s+)?((ERROR|CRITICAL)\s+\S+:\s+|\[odk\] error:\s*)")


@dataclass(frozen=True)
class PipelineCommand:
    pipeline: Path
    runtime: str
    engine: str
    image: str
    params: tuple[str, ...]  # NAME=VALUE overrides of pipeline parameters
    env: tuple[tuple[str, str], ...]  # added to the pipeline's environment

    def argv(self, job: Job) -> list[str]:
        argv = [sys.executable, "-u", "-m", "kit.pipeline.run", str(self.pipeline),
                "--input-dir", str(job.input_dir), "--output-dir", str(job.output_dir),
                "--runtime", self.runtime, "--engine", self.engine, "--image", self.image,
                "--job-name", job.name, "--log-dir", str(job.folder / "logs")]
        for param in self.params:
            argv += ["--param", param]
        return argv


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def failed_operators(log_path: Path) -> list[tuple[str, int]]:
    """(operator, exit code) of each operator the pipeline's last error line names as failed."""
    errors = [line for line in _lines(log_path) if line.startswith("[odk] error:")]
    m = FAILED_OPS_RE.search(errors[-1]) if errors else None
    return [(name, int(code)) for name, code in OP_NAME_RE.findall(m.group(1))] if m else []


def operator_error(log_path: Path) -> str:
    """The last line of an operator's own log that says error (its logging prefix removed), else ''."""
    for line in reversed(_lines(log_path)):
        if ERROR_LINE_RE.search(line):
            return LOG_PREFIX_RE.sub("", line.strip())[:300]
    return ""


def failure_reason(log_path: Path, code: int, log_dir: Path | None = None) -> str:
    """Why the pipeline failed: each failed operator with the last error line of its own log (log_dir/<op>.log),
    else the pipeline's own last error line, else its exit code."""
    errors = [line.split("error:", 1)[1].strip() for line in _lines(log_path) if line.startswith("[odk] error:")]
    if log_dir is not None:
        parts = []
        for name, op_code in failed_operators(log_path):
            own = operator_error(log_dir / f"{name}.log")
            parts.append(f"operator '{name}' (exit {op_code}): {own}" if own else
                         f"operator '{name}' (exit {op_code}) failed (see logs/{name}.log)")
        if parts:
            return "; ".join(parts)
    return errors[-1] if errors else f"the pipeline exited with code {code} (see job.log)"


def delivery_operators(pipeline: Path) -> set[str]:
    """Names of the pipeline's operators that run register-results (their command is python -m app.dicom.register)."""
    from kit.pipeline.model import PipelineError, load_pipeline

    try:
        loaded = load_pipeline(pipeline, {})
    except (PipelineError, OSError, ValueError):
        return set()
    return {op.name for op in loaded.operators if DELIVERY_MODULE in op.command}


def only_delivery_failed(log_path: Path, delivery: set[str]) -> bool:
    """The pipeline failed in its delivery operator(s) alone: every other operator did its part."""
    failed = {name for name, _ in failed_operators(log_path)}
    return bool(failed) and failed <= delivery


RETRY_RUN_S = 2.0  # a job that could not start (e.g. no space left for its status) is tried again after this


class JobRunner:
    """A queue of complete jobs and ``workers`` threads that run them one pipeline each."""

    def __init__(self, command: PipelineCommand, workers: int, log: Callable[[str], None],
                 triton_hint: Callable[[], str | None]) -> None:
        self.command = command
        self.log = log
        self.triton_hint = triton_hint  # a warning when no Triton can be found, else None
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.procs: dict[str, tuple[subprocess.Popen[bytes], Job]] = {}
        self.known: set[str] = set()  # jobs queued or running here (a second request for one is ignored)
        self.delivery = delivery_operators(command.pipeline)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.warm = _warm_server(command.runtime, log)  # the jobs' host operators fork from it (kit.warm)
        self.threads = [threading.Thread(target=self._work, name=f"job-worker-{i}", daemon=True)
                        for i in range(workers)]
        for t in self.threads:
            t.start()

    def submit(self, job: Job) -> None:
        try:
            job.update(state="queued")
        except OSError as exc:  # a full disk: the job still runs; its status is written when it can be
            self.log(f"job {job.name}: cannot write its status ({exc}); queued all the same")
        self.log(f"job {job.name}: study {job.status.study_instance_uid}, {job.status.instances} instance(s) "
                 f"from {job.status.calling_aet} -> queued")
        self.enqueue(job)

    def enqueue(self, job: Job) -> bool:
        """Queue a job whose status already says queued (a restart, `make listen-retry`); False when it is
        queued or running here already."""
        with self.lock:
            if job.name in self.known:
                return False
            self.known.add(job.name)
        self.queue.put(job)
        return True

    def _work(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            if self.stopping.is_set():  # stays queued: the next start runs it
                self.log(f"job {job.name}: still queued; the next 'make listen' runs it")
                continue
            try:
                self.run(job)
            except OSError as exc:  # the disk is full, or its folder went away: that job only
                if job.folder.is_dir() and not self.stopping.is_set():
                    self.log(f"job {job.name}: cannot run now ({exc}); trying again in {RETRY_RUN_S:g} s")
                    retry = threading.Timer(RETRY_RUN_S, self.queue.put, (job,))
                    retry.daemon = True
                    retry.start()
                    continue  # still known here: queued again
                self.log(f"job {job.name}: cannot run: {exc}")
            with self.lock:
                self.known.discard(job.name)

    def run(self, job: Job) -> None:
        if job.status.superseded_by:  # more of its study arrived while it waited: its follow-up runs them all
            job.update(state="superseded", finished_at=utc_now(),
                       reason=f"more instances of the study arrived before it ran; job {job.status.superseded_by} "
                              "runs the whole study instead")
            self.log(f"job {job.name}: superseded by {job.status.superseded_by} before it ran; not run")
            return
        hint = self.triton_hint()
        if hint:
            self.log(f"job {job.name}: warning: {hint}")
        job.update(state="running", started_at=utc_now(), reason="", finished_at="")
        self.log(f"job {job.name}: running {self.command.pipeline}")
        start = time.monotonic()
        env = {**os.environ, **dict(self.command.env), procgroup.MARKER: str(job.folder)}
        if self.warm is not None and self.warm.alive():
            env[warm.SOCKET_VARIABLE] = str(self.warm.socket)
        with job.log_path.open("ab") as out:
            if hint:
                out.write(f"[odk] warning: {hint}\n".encode())
                out.flush()
            with self.lock:  # stop() sees every pipeline that starts: none starts once it began
                if self.stopping.is_set():
                    job.update(state="queued", started_at="")
                    self.log(f"job {job.name}: still queued; the next 'make listen' runs it")
                    return
                try:
                    proc = subprocess.Popen(self.command.argv(job), cwd=ROOT, env=env, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
                except OSError as exc:
                    proc, error = None, exc
                else:
                    self.procs[job.name] = (proc, job)
            if proc is None:
                self._finish(job, 127, f"cannot start the pipeline: {error}", start)
                return
            try:
                procgroup.record(job.folder, proc.pid, utc_now())
                code = proc.wait()
            finally:
                with self.lock:
                    self.procs.pop(job.name, None)
                if procgroup.members(job.folder):  # an operator that outlived its pipeline runner
                    procgroup.kill_leftovers(job.folder)
                procgroup.forget(job.folder)
        if self.stopping.is_set() and code != 0:
            if delivered(job):  # stopped after its results reached the PACS: the status says so
                self._finish(job, 0, "", start)
                return
            self.abandon(job, "running")
            return
        self._finish(job, code, "" if code == 0 else failure_reason(job.log_path, code, job.folder / "logs"), start)

    def _finish(self, job: Job, code: int, reason: str, start: float) -> None:
        seconds = time.monotonic() - start
        state = "succeeded" if code == 0 else "failed"
        if code != 0 and only_delivery_failed(job.log_path, self.delivery):
            state = "delivery-failed"
            reason += f"; the results are kept in output/: 'make listen-resend JOB={job.name}' sends them again"
        job.update(state=state, reason=reason, finished_at=utc_now())
        detail = f"succeeded in {seconds:.1f} s" if code == 0 else f"{state} after {seconds:.1f} s: {reason}"
        self.log(f"job {job.name}: {detail} ({job.folder})")

    def abandon(self, job: Job, was: str) -> None:
        job.update(state="failed", finished_at=utc_now(),
                   reason=f"the listener stopped while the job was {was}; its instances are kept in input/ "
                          f"('make listen-retry JOB={job.name}' runs it again)")
        self.log(f"job {job.name}: failed: listener stopped while {was}; instances kept in {job.input_dir}")

    def stop(self, timeout: float = STOP_GRACE_S) -> None:
        """Stop taking jobs; end running pipelines (SIGTERM to their whole process groups, SIGKILL after
        ``timeout`` s); their jobs fail (retry-able), queued ones stay queued for the next start."""
        with self.lock:
            self.stopping.set()
            running = list(self.procs.values())
        for proc, _job in running:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc, job in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(f"job {job.name}: its pipeline did not end within {timeout:g} s of SIGTERM; killed")
            # the runner and operators left in its group: killed, their shm regions and temporaries removed
            procgroup.kill_leftovers(job.folder)
            proc.wait()
        for _ in self.threads:
            self.queue.put(None)
        for t in self.threads:
            t.join(timeout=max(1.0, deadline + 2.0 - time.monotonic()))
        if self.warm is not None:  # it ends the operators it forked (their own sessions) first
            self.warm.stop()


def _warm_server(runtime: str, log: Callable[[str], None]) -> warm.WarmServer | None:
    if runtime == "container" or not warm.enabled():
        return None
    try:
        return warm.WarmServer.start()
    except (warm.WarmError, OSError) as exc:
        log(f"warning: operators start cold: {exc}")
        return None


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
