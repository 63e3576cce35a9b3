"""Pipeline runs: the last ``make run-pipeline`` (its operator logs in ``$ODK_RUN_DIR/pipeline``) and the
DICOM listener's jobs (``$ODK_RUN_DIR/listen/jobs/<job>/``: status.json, job.log, input/, output/).

An operator's status comes from the summary table that ``kit.pipeline.run`` prints at the end of a run
(``operator  status  time  detail``) when a log holds it, else from the operator's own log: the driver's
``stage <name>: done`` line means ok, an ERROR line without it means failed.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .studies import Source

SUMMARY_HEADER = re.compile(r"^operator\s+status\s+time\s+detail\s*$")
SUMMARY_ROW = re.compile(r"^(?P<op>\S+)\s+(?P<status>ok|failed|skipped)\s+(?P<secs>[\d.]+)s\s*(?P<detail>.*)$")
STATUS_FIELDS = ("job", "study_instance_uid", "calling_aet", "instances", "state", "reason", "received_at",
                 "started_at", "finished_at", "pipeline")


@dataclass
class OperatorRun:
    name: str
    status: str  # ok | failed | skipped | running | unknown
    seconds: float | None = None
    detail: str = ""
    log: str = ""  # path of its log, relative to the run's folder ("" when none)


@dataclass
class Run:
    kind: str  # pipeline | listener
    name: str
    state: str
    operators: list[OperatorRun] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    log: str = ""  # the run's own log, relative to its folder
    source: str = ""  # key of the results folder it produced ("" when none)
    logs_source: str = "out"  # key under which its logs are served

    def to_json(self) -> dict:
        return asdict(self)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def summary_table(text: str) -> list[OperatorRun]:
    """The operators of kit.pipeline.run's closing summary table in a log (the last table wins)."""
    rows: list[OperatorRun] = []
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if SUMMARY_HEADER.match(line):
            rows, inside = [], True
            continue
        m = SUMMARY_ROW.match(line) if inside else None
        if m:
            rows.append(OperatorRun(m["op"], m["status"], float(m["secs"]), m["detail"].strip()))
        else:
            inside = False
    return rows


def from_log(name: str, text: str) -> OperatorRun:
    """One operator's status from its own log."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if any(re.search(r"\bstage \S+: done\b", ln) for ln in lines):
        return OperatorRun(name, "ok")
    errors = [ln for ln in lines if " ERROR " in ln or "[odk] error:" in ln]
    if errors:
        return OperatorRun(name, "failed", detail=errors[-1].split(": ", 1)[-1][:200])
    return OperatorRun(name, "unknown", detail="" if lines else "empty log")


def operators_of(folder: Path, logs: list[Path], table: list[OperatorRun]) -> list[OperatorRun]:
    by_log = {p.stem: p for p in logs}
    in_run_order = sorted(by_log.items(), key=lambda item: (item[1].stat().st_mtime, item[0]))  # logs end in order
    ops = table or [from_log(name, read_text(p)) for name, p in in_run_order]
    for op in ops:
        if op.name in by_log:
            op.log = by_log[op.name].relative_to(folder).as_posix()
    return ops


def pipeline_run(log_dir: Path) -> Run | None:
    """The last ``make run-pipeline``: one operator per ``<op>.log`` in its log folder."""
    logs = sorted(log_dir.glob("*.log")) if log_dir.is_dir() else []
    if not logs:
        return None
    ops = operators_of(log_dir, logs, [])
    state = "failed" if any(o.status == "failed" for o in ops) else (
        "succeeded" if ops and all(o.status == "ok" for o in ops) else "unknown")
    return Run(kind="pipeline", name="make run-pipeline", state=state, operators=ops, source="out",
               info={"logs": str(log_dir)})


def listener_job(folder: Path) -> Run:
    status: dict = {}
    problem = ""
    try:
        loaded = json.loads((folder / "status.json").read_text(encoding="utf-8"))
        status = loaded if isinstance(loaded, dict) else {}
    except FileNotFoundError:
        problem = "no status.json"
    except (OSError, ValueError) as exc:
        problem = f"status.json unreadable: {exc}"
    info = {k: status.get(k) for k in STATUS_FIELDS if k in status}
    if problem:
        info["reason"] = problem
    job_log = folder / "job.log"
    logs = sorted(p for p in folder.rglob("*.log") if p != job_log and "input" not in p.relative_to(folder).parts)
    ops = operators_of(folder, logs, summary_table(read_text(job_log)))
    return Run(kind="listener", name=str(status.get("job") or folder.name), state=str(status.get("state") or "unknown"),
               operators=ops, info=info, log="job.log" if job_log.is_file() else "",
               source=f"job:{folder.name}" if (folder / "output").is_dir() else "", logs_source=f"job:{folder.name}")


def listener_jobs(jobs_root: Path) -> list[Run]:
    if not jobs_root.is_dir():
        return []
    return [listener_job(d) for d in sorted(jobs_root.iterdir()) if d.is_dir() and not d.is_symlink()]


def job_folder(jobs_root: Path, name: str) -> Path | None:
    """The folder of listener job ``name``, only a direct sub-folder of the jobs folder."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        return None
    folder = jobs_root / name
    if folder.is_symlink() or not folder.is_dir() or folder.resolve().parent != jobs_root.resolve():
        return None
    return folder


def job_source(jobs_root: Path, name: str) -> Source | None:
    folder = job_folder(jobs_root, name)
    if folder is None:
        return None
    logs = tuple(sorted(p for p in folder.rglob("*.log") if "input" not in p.relative_to(folder).parts))
    return Source(key=f"job:{name}", title=f"listener job {name}", results=folder / "output", inputs=folder,
                  logs=logs)
