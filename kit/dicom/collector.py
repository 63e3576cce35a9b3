"""Groups received instances by StudyInstanceUID into jobs, and says when a study is complete.

A study is complete when no association that delivered to it is still open and no instance of it has
arrived for ``idle_s`` seconds (Clara's DICOM adapter rule). An instance of a study whose job was already
handed on starts a new job for that study.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kit.dicom.jobs import Job


@dataclass
class Pending:
    job: Job
    last_arrival: float
    open_assocs: set[int] = field(default_factory=set)


class StudyCollector:
    def __init__(self, idle_s: float, new_job: Callable[[str, str], Job],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self.new_job = new_job  # (study_uid, calling_aet) -> a job in state "receiving"
        self.clock = clock
        self.lock = threading.Lock()
        self.pending: dict[str, Pending] = {}  # study UID -> its job still receiving
        self.wake = threading.Event()  # set when an association closes: a study may be complete now

    def job_for(self, study_uid: str, calling_aet: str, assoc_id: int) -> Job:
        """The receiving job of this study (a new one when there is none), marked as fed by assoc_id."""
        with self.lock:
            entry = self.pending.get(study_uid)
            if entry is None:
                entry = Pending(self.new_job(study_uid, calling_aet), self.clock())
                self.pending[study_uid] = entry
            entry.open_assocs.add(assoc_id)
            entry.last_arrival = self.clock()
            return entry.job

    def closed(self, assoc_id: int) -> None:
        """An association was released or aborted: its studies may complete once idle."""
        with self.lock:
            for entry in self.pending.values():
                entry.open_assocs.discard(assoc_id)
        self.wake.set()

    def wait(self, timeout: float) -> None:
        """Until an association closes, or ``timeout`` seconds (the idle time of open studies runs out)."""
        self.wake.wait(timeout)
        self.wake.clear()

    def complete(self) -> list[Job]:
        """Remove and return the jobs whose study is complete now."""
        now = self.clock()
        with self.lock:
            done = [uid for uid, e in self.pending.items()
                    if not e.open_assocs and now - e.last_arrival >= self.idle_s]
            return [self.pending.pop(uid).job for uid in done]

    def drain(self) -> list[Job]:
        """Every job still receiving (at shutdown)."""
        with self.lock:
            jobs = [e.job for e in self.pending.values()]
            self.pending.clear()
            return jobs
