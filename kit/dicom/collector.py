"""Groups received instances by StudyInstanceUID into jobs, and says when a study is complete.

The rules (docs/dicom-listener.md, "Jobs"):

- A study is *complete* when no association that delivered to it is still open and no instance of it has
  arrived for ``idle_s`` seconds (Clara's DICOM adapter rule), every association that delivered to it ended
  with an A-RELEASE, and none of its instances was refused. Otherwise its job is held ``incomplete``: kept,
  not run. More instances of that study join the same job (it receives again and completes by the same rule).
- Instances arriving for a study whose job was already handed on (queued, running or finished) open a
  *follow-up* job of that study: it starts with every instance of the earlier job (hard links) plus the new
  ones, runs on all of them, and its result replaces the earlier one (the SEG writer derives the SEG's Series
  Instance UID from the source series, so the re-run's SEG is a new instance of the same SEG series). The
  two jobs name each other (``supersedes`` / ``superseded_by``).
- An instance identical to one already received for the study (same SOP Instance UID, same bytes) changes
  nothing: re-sending a whole study as it was makes no new job.
- A study's instances never go to another study's job; an instance that claims a study but another patient,
  a SOP Instance UID already held in another series or study, is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kit.dicom.intake import Received, file_digest
from kit.dicom.jobs import FINAL_STATES, HELD_STATES, STATUS_FILE, Job, read_jobs


@dataclass
class Held:
    """One SOP instance of a study: its series, its file, and (once computed) the SHA-256 of its bytes."""
    series: str
    path: Path
    digest: str = ""

    def same_bytes(self, digest: str) -> bool:
        if not self.digest:
            try:
                self.digest = file_digest(self.path)
            except OSError:
                return False
        return self.digest == digest


@dataclass
class Study:
    uid: str
    job: Job
    patient_id: str | None  # None: not known (a study adopted from files that could not be read)
    last_arrival: float
    instances: dict[str, Held] = field(default_factory=dict)  # SOP Instance UID -> held instance
    open_assocs: set[int] = field(default_factory=set)
    # why the study is not complete, by the association it happened in; a later association that delivers to
    # the study clears those of associations that have ended (the sender is sending again)
    faults: dict[int, list[str]] = field(default_factory=dict)
    held: bool = False  # the job is held incomplete

    def fault(self, assoc_id: int, why: str) -> None:
        listed = self.faults.setdefault(assoc_id, [])
        if why not in listed:
            listed.append(why)

    def why(self) -> str:
        return "; ".join(dict.fromkeys(w for listed in self.faults.values() for w in listed))


# finished studies remembered (for re-sends and follow-ups); older ones are forgotten, and more of them then
# opens a job of its own as if the study were new
REMEMBERED_STUDIES = 256


@dataclass(frozen=True)
class Stored:
    """What became of one instance: "stored", "same" (an identical copy already held), or a refusal reason."""
    outcome: str
    job: Job | None = None
    detail: str = ""


class StudyCollector:
    def __init__(self, idle_s: float, new_job: Callable[[str, str], Job], log: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self.new_job = new_job  # (study_uid, calling_aet) -> a job in state "receiving"
        self.log = log
        self.clock = clock
        self.lock = threading.Lock()
        self.pending: dict[str, Study] = {}  # study UID -> its job receiving or held incomplete
        self.handed_on: dict[str, Study] = {}  # study UID -> its latest job that went to the runner
        self.sop_study: dict[str, str] = {}  # SOP Instance UID -> its study (every study above)
        self.early: dict[str, dict[int, list[str]]] = {}  # faults of studies that have no job yet
        self.live: set[int] = set()  # associations that delivered or were refused something, still open
        self.wake = threading.Event()  # set when an association closes: a study may be complete now

    # -- receiving ---------------------------------------------------------------------------------------------
    def store(self, inst: Received, received: Path, calling_aet: str, assoc_id: int) -> Stored:
        """File one checked instance (its received file is moved into the job, or removed when not needed)."""
        with self.lock:
            other = self.sop_study.get(inst.sop)
            if other is not None and other != inst.study:
                return self._drop(received, Stored("conflict", None, "its SOP Instance UID is an instance of "
                                                   "another study already received"))
            study = self._still_pending(inst.study)
            if study is None:
                earlier = self.handed_on.get(inst.study)
                if earlier is not None and not earlier.job.folder.is_dir():  # discarded: the study starts afresh
                    earlier = None
                if earlier is not None:
                    if earlier.patient_id not in (None, inst.patient_id):
                        return self._drop(received, Stored("conflict", None, "it claims a study of another "
                                                           "patient (PatientID differs)"))
                    known = earlier.instances.get(inst.sop)
                    if known is not None and known.series == inst.series and known.same_bytes(inst.digest):
                        return self._drop(received, Stored("same", earlier.job))
                study = self._open(inst, calling_aet, earlier)
            elif study.patient_id not in (None, inst.patient_id):
                return self._drop(received, Stored("conflict", None, "it claims a study of another patient "
                                                   "(PatientID differs)"))
            known = study.instances.get(inst.sop)
            if known is not None and known.series != inst.series:
                return self._drop(received, Stored("conflict", None, f"its SOP Instance UID is already an instance "
                                                   f"of series {known.series}"))
            self.live.add(assoc_id)
            study.open_assocs.add(assoc_id)
            study.last_arrival = self.clock()
            for other_assoc in [a for a in study.faults if a != assoc_id and a not in self.live]:
                del study.faults[other_assoc]
            if study.held:
                study.held = False
                study.job.update(state="receiving", reason="")
                self.log(f"job {study.job.name}: study {study.uid} receives again (from {calling_aet})")
            if known is not None and known.same_bytes(inst.digest):
                return self._drop(received, Stored("same", study.job))
            path = study.job.add_instance_file(inst.series, inst.sop, received)
            study.instances[inst.sop] = Held(inst.series, path, inst.digest)
            self.sop_study[inst.sop] = inst.study
            return Stored("stored", study.job)

    def _still_pending(self, uid: str) -> Study | None:
        """The pending study, unless an operator acted on its held job meanwhile (``make listen-retry`` or
        ``listen-discard`` change or remove the job folder): then it is no longer this listener's to fill."""
        study = self.pending.get(uid)
        if study is None or not study.held:
            return study
        try:
            state = json.loads((study.job.folder / STATUS_FILE).read_text(encoding="utf-8")).get("state")
        except (OSError, ValueError):
            state = None
        if state == "incomplete":
            return study
        del self.pending[uid]
        if state is not None:  # retried: handed on as if complete
            self._remember(study)
        return None

    def _drop(self, received: Path, result: Stored) -> Stored:
        with contextlib.suppress(OSError):
            received.unlink()
        return result

    def _open(self, inst: Received, calling_aet: str, earlier: Study | None) -> Study:
        """A new job for the study; a follow-up job starts with every instance of the earlier one."""
        job = self.new_job(inst.study, calling_aet)
        study = Study(inst.study, job, inst.patient_id, self.clock())
        study.faults = {a: w for a, w in self.early.pop(inst.study, {}).items() if a in self.live}
        if earlier is not None:
            for sop, held in earlier.instances.items():
                dest = job.input_dir / held.series / held.path.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(held.path, dest)
                except OSError:
                    shutil.copy2(held.path, dest)
                study.instances[sop] = Held(held.series, dest, held.digest)
            job.sop_uids = set(study.instances)
            job.update(instances=len(study.instances), supersedes=earlier.job.name)
            earlier.job.update(superseded_by=job.name)
            self.log(f"job {job.name}: more of study {inst.study}, whose job {earlier.job.name} was already "
                     f"{earlier.job.status.state}: re-runs the study with its {len(earlier.instances)} instance(s) "
                     "and the new ones; its result replaces that job's")
        self.pending[inst.study] = study
        return study

    def refused(self, study_uid: str, assoc_id: int, fault: str) -> None:
        """An instance of this study was refused: the study is not complete (held incomplete when it would be)."""
        with self.lock:
            self.live.add(assoc_id)
            study = self.pending.get(study_uid)
            if study is None:
                listed = self.early.setdefault(study_uid, {}).setdefault(assoc_id, [])
                if fault not in listed:
                    listed.append(fault)
                return
            study.open_assocs.add(assoc_id)
            study.last_arrival = self.clock()
            study.fault(assoc_id, fault)

    def closed(self, assoc_id: int, broken: str = "") -> None:
        """An association ended; ``broken`` says how when it was not released (its studies are incomplete)."""
        with self.lock:
            self.live.discard(assoc_id)
            for study in self.pending.values():
                if assoc_id in study.open_assocs:
                    study.open_assocs.discard(assoc_id)
                    if broken:
                        study.fault(assoc_id, broken)
            for uid in [u for u, by in self.early.items() if not set(by) & self.live]:
                del self.early[uid]  # refused in associations that all ended: a later sending starts afresh
        self.wake.set()

    def wait(self, timeout: float) -> None:
        """Until an association closes, or ``timeout`` seconds (the idle time of open studies runs out)."""
        self.wake.wait(timeout)
        self.wake.clear()

    # -- completing ----------------------------------------------------------------------------------------------
    def complete(self) -> list[Job]:
        """The jobs whose study is complete now (handed on: they leave the pending ones); studies that ended
        incomplete are held (state ``incomplete``, once, with a log line)."""
        now = self.clock()
        done: list[Job] = []
        with self.lock:
            for uid, study in list(self.pending.items()):
                if study.held or study.open_assocs or now - study.last_arrival < self.idle_s:
                    continue
                if study.faults:
                    self._hold(study)
                    continue
                self._remember(self.pending.pop(uid))
                done.append(study.job)
        return done

    def _remember(self, study: Study) -> None:
        self.handed_on.pop(study.uid, None)
        self.handed_on[study.uid] = study  # the newest last
        while len(self.handed_on) > REMEMBERED_STUDIES:
            old = self.handed_on.pop(next(iter(self.handed_on)))
            if old.uid not in self.pending:
                for sop in old.instances:
                    self.sop_study.pop(sop, None)

    def _hold(self, study: Study) -> None:
        why = study.why()
        try:
            study.job.update(state="incomplete", reason=f"part of the study is missing: {why}")
        except OSError as exc:  # the disk is full: tried again at the next check
            self.log(f"job {study.job.name}: cannot be marked incomplete ({exc}); trying again")
            return
        study.held = True
        self.log(f"job {study.job.name}: study {study.uid} held incomplete with {len(study.instances)} "
                 f"instance(s), not run: {why}; send the rest of the study (it joins this job) or decide with "
                 f"'make listen-retry JOB={study.job.name}' / 'make listen-discard JOB={study.job.name}'")

    def give_back(self, job: Job) -> None:
        """A handed-on job the runner could not take (e.g. the disk is full): it completes again next check."""
        with self.lock:
            uid = job.status.study_instance_uid
            study = self.handed_on.get(uid)
            if study is not None and study.job is job and uid not in self.pending:
                self.pending[uid] = self.handed_on.pop(uid)

    def drain(self) -> list[Job]:
        """Every job still receiving (at shutdown); held incomplete ones stay as they are."""
        with self.lock:
            jobs = [s.job for s in self.pending.values() if not s.held]
            self.pending.clear()
            return jobs

    # -- restart ---------------------------------------------------------------------------------------------
    def adopt(self, jobs_dir: Path) -> list[Job]:
        """Jobs of an earlier run of the listener: held incomplete ones receive their study's later instances,
        and the latest finished job of each study is known (an identical re-send makes no new job)."""
        held: list[Job] = []
        for status in read_jobs(jobs_dir):  # oldest first: a later job of a study replaces an earlier one
            state = status.get("state")
            if state not in FINAL_STATES + HELD_STATES or status.get("superseded_by"):
                continue
            try:
                job = Job.load(jobs_dir / status["job"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            study = Study(job.status.study_instance_uid, job, self._patient_of(job), self.clock())
            for path in job.input_dir.glob("*/*.dcm"):
                study.instances[path.stem] = Held(path.parent.name, path)
                self.sop_study[path.stem] = study.uid
            if state in HELD_STATES:
                study.held = True
                study.faults = {0: [job.status.reason or "held incomplete by an earlier run"]}
                self.pending[study.uid] = study
                held.append(job)
            else:
                self._remember(study)
        return held

    @staticmethod
    def _patient_of(job: Job) -> str | None:
        import pydicom

        for path in job.input_dir.glob("*/*.dcm"):
            try:
                return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
                           .get("PatientID", "") or "")
            except Exception:  # an unreadable file: the next one
                continue
        return None
