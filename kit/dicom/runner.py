"""Runs each complete study's job: ``python -m kit.pipeline.run`` (the wiring of ``make run-pipeline``) on
the job's input/ -> output/, its output in job.log, its outcome in status.json and the listener's log."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kit.dicom.jobs import Job, utc_now
from kit.paths import ROOT
from kit.warm import client as warm


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


def failure_reason(log_path: Path, code: int) -> str:
    """The pipeline's own last error line, else its exit code."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    errors = [line.split("error:", 1)[1].strip() for line in lines if line.startswith("[odk] error:")]
    return errors[-1] if errors else f"the pipeline exited with code {code} (see job.log)"


class JobRunner:
    """A queue of complete jobs and ``workers`` threads that run them one pipeline each."""

    def __init__(self, command: PipelineCommand, workers: int, log: Callable[[str], None],
                 triton_hint: Callable[[], str | None]) -> None:
        self.command = command
        self.log = log
        self.triton_hint = triton_hint  # a warning when no Triton can be found, else None
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.warm = _warm_server(command.runtime, log)  # the jobs' host operators fork from it (kit.warm)
        self.threads = [threading.Thread(target=self._work, name=f"job-worker-{i}", daemon=True)
                        for i in range(workers)]
        for t in self.threads:
            t.start()

    def submit(self, job: Job) -> None:
        job.update(state="queued")
        self.log(f"job {job.name}: study {job.status.study_instance_uid}, {job.status.instances} instance(s) "
                 f"from {job.status.calling_aet} -> queued")
        self.queue.put(job)

    def _work(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            if self.stopping.is_set():
                self.abandon(job, "queued")
                continue
            self.run(job)

    def run(self, job: Job) -> None:
        hint = self.triton_hint()
        if hint:
            self.log(f"job {job.name}: warning: {hint}")
        job.update(state="running", started_at=utc_now())
        self.log(f"job {job.name}: running {self.command.pipeline}")
        start = time.monotonic()
        env = {**os.environ, **dict(self.command.env)}
        if self.warm is not None and self.warm.alive():
            env[warm.SOCKET_VARIABLE] = str(self.warm.socket)
        with job.log_path.open("ab") as out:
            if hint:
                out.write(f"[odk] warning: {hint}\n".encode())
                out.flush()
            try:
                proc = subprocess.Popen(self.command.argv(job), cwd=ROOT, env=env, stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as exc:
                self._finish(job, 127, f"cannot start the pipeline: {exc}", start)
                return
            with self.lock:
                self.procs[job.name] = proc
            code = proc.wait()
            with self.lock:
                self.procs.pop(job.name, None)
        if self.stopping.is_set() and code != 0:
            self.abandon(job, "running")
            return
        self._finish(job, code, "" if code == 0 else failure_reason(job.log_path, code), start)

    def _finish(self, job: Job, code: int, reason: str, start: float) -> None:
        seconds = time.monotonic() - start
        state = "succeeded" if code == 0 else "failed"
        job.update(state=state, reason=reason, finished_at=utc_now())
        detail = f"succeeded in {seconds:.1f} s" if code == 0 else f"failed after {seconds:.1f} s: {reason}"
        self.log(f"job {job.name}: {detail} ({job.folder})")

    def abandon(self, job: Job, was: str) -> None:
        job.update(state="failed", finished_at=utc_now(),
                   reason=f"the listener stopped while the job was {was}; its instances are kept in input/")
        self.log(f"job {job.name}: failed: listener stopped while {was}; instances kept in {job.input_dir}")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop taking jobs; end running pipelines (their whole process groups); fail what is left."""
        self.stopping.set()
        with self.lock:
            procs = list(self.procs.values())
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        for _ in self.threads:
            self.queue.put(None)
        for t in self.threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        for proc in procs:  # operators the pipeline runner started in its group
            _signal_group(proc, signal.SIGKILL)
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
