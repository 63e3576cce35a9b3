"""Job folders of the listener: ``<jobs>/<job>/{input/, output/, logs/, job.log, status.json}``.

status.json keys (read by other tools; keep them): job, study_instance_uid, calling_aet, instances, state
(receiving | incomplete | queued | running | succeeded | failed | delivery-failed | superseded), reason, received_at,
started_at, finished_at, pipeline, supersedes / superseded_by (the job of the same study that this one re-runs
with more instances, and the one that re-runs it). While a job's pipeline runs, <job>/run.state records its
process group (kit.dicom.procgroup).
"""

from __future__ import annotations

import json
import os
import re
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from odk import atomic_write_bytes

STATUS_FILE = "status.json"
STATES = ("receiving", "incomplete", "queued", "running", "succeeded", "failed", "delivery-failed", "superseded")
# superseded: queued, and more instances of its study arrived before it ran; the job that supersedes it runs them all
FINAL_STATES = ("succeeded", "failed", "superseded")
# held, not run: part of the study is missing (an association ended without release, instances were refused);
# more instances of the study join the job, or an operator decides
HELD_STATES = ("incomplete",)
# Jobs that no listener works on: `make listen-prune` may remove them, `make listen-retry` runs them again
# (delivery-failed: the results are kept and `make listen-resend` sends them; incomplete: received in part).
SETTLED_STATES = ("succeeded", "failed", "delivery-failed", "incomplete", "superseded")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def job_name(called_aet: str, pipeline: str, when: datetime | None = None) -> str:
    """Clara's ``{CalledAET}-{pipeline}-{UTC yyyyMMddHHmmss}``, plus 6 hex digits so names never clash."""
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{called_aet.strip()}-{pipeline}")
    return f"{safe}-{stamp}-{uuid.uuid4().hex[:6]}"


@dataclass
class JobStatus:
    job: str
    study_instance_uid: str
    calling_aet: str
    instances: int = 0
    state: str = "receiving"
    reason: str = ""
    received_at: str = ""
    started_at: str = ""
    finished_at: str = ""
    pipeline: str = ""
    supersedes: str = ""
    superseded_by: str = ""


class Job:
    """One study's job: its folder and its status, written atomically on every change."""

    def __init__(self, folder: Path, status: JobStatus) -> None:
        self.folder = folder
        self.status = status
        self.lock = threading.Lock()
        self.sop_uids: set[str] = set()
        self.extra: dict[str, object] = {}  # keys of status.json this version does not know, kept as they are

    @classmethod
    def create(cls, jobs_dir: Path, name: str, study_uid: str, calling_aet: str, pipeline: str) -> Job:
        folder = jobs_dir / name
        (folder / "input").mkdir(parents=True)
        job = cls(folder, JobStatus(job=name, study_instance_uid=study_uid, calling_aet=calling_aet,
                                    received_at=utc_now(), pipeline=pipeline))
        job.save()
        return job

    @classmethod
    def load(cls, folder: Path) -> Job:
        """The job of an existing folder, from its status.json (OSError / ValueError when unreadable), with the
        SOP Instance UIDs its input/ holds (file names)."""
        data = json.loads((folder / STATUS_FILE).read_text(encoding="utf-8"))
        known = {k: v for k, v in data.items() if k in JobStatus.__dataclass_fields__}
        job = cls(folder, JobStatus(**known))
        job.extra = {k: v for k, v in data.items() if k not in known}
        job.sop_uids = {p.stem for p in job.input_dir.glob("*/*.dcm")}
        return job

    @property
    def name(self) -> str:
        return self.status.job

    @property
    def input_dir(self) -> Path:
        return self.folder / "input"

    @property
    def output_dir(self) -> Path:
        return self.folder / "output"

    @property
    def log_path(self) -> Path:
        return self.folder / "job.log"

    def add_instance(self, series_uid: str, sop_uid: str, encoded: bytes) -> None:
        """Store one received instance as input/<series>/<sop>.dcm (atomically; a resent one replaces it)."""
        folder = self.input_dir / safe_uid(series_uid)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / f"{safe_uid(sop_uid)}.dcm", encoded)
        with self.lock:
            self.sop_uids.add(sop_uid)
            self.status.instances = len(self.sop_uids)
        self.save()

    def add_instance_file(self, series_uid: str, sop_uid: str, received: Path) -> Path:
        """Move a received instance's file to input/<series>/<sop>.dcm (the UIDs are checked valid, so the name is
        the UID itself and stays inside input/); a resent one replaces it. Returns where it is now."""
        folder = self.input_dir / series_uid
        dest = folder / f"{sop_uid}.dcm"
        if dest.resolve().parent != folder.resolve() or folder.resolve().parent != self.input_dir.resolve():
            raise ValueError(f"UIDs {series_uid!r} / {sop_uid!r} do not name a file in {self.input_dir}")
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(received, dest)
        with self.lock:
            self.sop_uids.add(sop_uid)
            self.status.instances = len(self.sop_uids)
        self.save()
        return dest

    def update(self, **changes: object) -> None:
        with self.lock:
            for key, value in changes.items():
                setattr(self.status, key, value)
        self.save()

    def save(self) -> None:
        with self.lock:
            text = json.dumps({**self.extra, **asdict(self.status)}, indent=2) + "\n"
            atomic_write_bytes(self.folder / STATUS_FILE, text.encode())


def safe_uid(uid: str) -> str:
    """A UID as a file name (UIDs are digits and dots; anything else is replaced)."""
    return re.sub(r"[^0-9A-Za-z.]+", "_", uid.strip("\0 ")) or "unknown"


def read_jobs(jobs_dir: Path) -> list[dict]:
    """Every job's status.json under jobs_dir, oldest first (unreadable ones skipped)."""
    found = []
    for path in sorted(jobs_dir.glob(f"*/{STATUS_FILE}")):
        try:
            found.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda s: s.get("received_at", ""))
