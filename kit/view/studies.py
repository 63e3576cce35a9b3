"""The studies of one results folder: the operator's reports, their label maps and the CT they came from.

A study is ``<stem>.json`` (the operator's report) next to ``<stem>_seg.nii.gz``. The CT is found in the
input folder: the report's ``input`` path when it lies there, else the same relative path or the same
stem under the input folder (a report written inside a container names ``/input/...``).
Studies that failed leave no report: they are the inputs without one, with the reason from the
operator's log (``FAILED <path>: <reason>``) when a log is at hand.
A CT is only ever a file whose real path lies inside the input folder (``paths.real_file_inside``): a CT that
is a symbolic link out of it is not shown, and the study says so, as the operator does not read such a link
(odk.find_studies); a link to a file inside is that file, shown once.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import odk
from odk import is_nifti, stem

from .paths import Missing, Outside, real_file_inside

SEG_SUFFIX = "_seg.nii.gz"
FAILED_LINE = re.compile(r"\bFAILED (?P<path>\S.*?): (?P<reason>.+)$")


@dataclass(frozen=True)
class Source:
    """One results folder as the viewer shows it."""

    key: str  # "out" (OUTPUT_DIR) or "job:<name>" (a listener job)
    title: str
    results: Path
    inputs: Path | None
    logs: tuple[Path, ...] = ()


@dataclass
class Study:
    name: str
    rel_dir: str  # folder of the study inside the results folder ("" at the top)
    status: str  # ok | failed | incomplete
    reason: str = ""
    report: odk.StudyResult = field(default_factory=lambda: odk.StudyResult(input=""))
    report_rel: str = ""
    seg_rel: str = ""
    ct: Path | None = None
    ct_problem: str = ""
    overlay_rel: str = ""

    @property
    def id(self) -> str:
        return self.report_rel or self.seg_rel or f"input/{self.name}"


def read_report(path: Path) -> odk.StudyResult | None:
    """The operator's report (odk.read_result), or None when the JSON file is something else."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or "shape" not in data:
        return None
    if "outputs" in data or "labels" in data or any(str(k).endswith("_volume_ml") for k in data):
        try:
            return odk.result_of(data)
        except (TypeError, ValueError, AttributeError):
            return None
    return None


def failures_in_logs(logs: tuple[Path, ...]) -> dict[str, str]:
    """``{stem: reason}`` from the operator's ``FAILED <path>: <reason>`` log lines."""
    found: dict[str, str] = {}
    for log in logs:
        try:
            text = log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            m = FAILED_LINE.search(line)
            if m:
                found[stem(Path(m["path"].strip()))] = m["reason"].strip()
    return found


def input_files(inputs: Path | None) -> list[Path]:
    if inputs is None or not inputs.is_dir():
        return []
    return sorted(p for p in inputs.rglob("*")
                  if p.is_file() and is_nifti(p) and not p.name.endswith(SEG_SUFFIX))


def ct_file(base: Path, path: Path) -> Path | None:
    """The real path of the CT ``path`` when it is a NIfTI file inside the input folder ``base`` (the viewer's one
    rule for every file it serves, ``paths.real_file_inside``); None when there is no such file. Raises Outside
    for a file whose real location is not inside ``base``."""
    try:
        real = real_file_inside(base, path)
    except Missing:
        return None
    return real if is_nifti(real) else None


def link_out(path: Path, inputs: Path) -> str:
    return (f"the CT {path.name} is a symbolic link out of the input folder {inputs}: not shown (the operator "
            "does not read such a link either)")


def find_ct(report_input: str, rel_dir: str, name: str, inputs: Path | None,
            candidates: list[Path]) -> tuple[Path | None, str]:
    """The CT of a study, only ever a NIfTI file inside the input folder; with it, or instead, why a file that
    was found is not shown ("" when none was found)."""
    if inputs is None or not inputs.is_dir():
        return None, ""
    base = inputs.resolve()
    refused: list[str] = []

    def look(p: Path) -> Path | None:
        try:
            return ct_file(base, p)
        except Outside:
            if Path(os.path.normpath(p)).is_relative_to(base):  # named inside, really outside: a link out
                refused.append(link_out(p, inputs))
            return None

    if report_input:
        given = PurePosixPath(report_input)
        if given.is_absolute() and (hit := look(Path(report_input))):
            return hit, ""
        parts = [p for p in given.parts if p not in ("/", "..", ".")]
        for i in range(len(parts)):  # /input/sub/x.nii.gz -> sub/x.nii.gz, x.nii.gz
            if hit := look(base.joinpath(*parts[i:])):
                return hit, ""
    for suffix in (".nii.gz", ".nii"):
        if hit := look(base / rel_dir / f"{name}{suffix}"):
            return hit, ""
    same = [p for p in candidates if stem(p) == name]
    if len(same) == 1 and (hit := look(same[0])):
        return hit, ""
    return None, refused[0] if refused else ""


def folder_of(path: Path, root: Path) -> str:
    """The folder of ``path`` inside ``root``, "" at the top."""
    rel = path.parent.relative_to(root).as_posix()
    return "" if rel == "." else rel


def scan(source: Source) -> list[Study]:
    """Every study of the results folder, then the inputs that have no result."""
    root = source.results
    if not root.is_dir():
        return []
    inputs = input_files(source.inputs)
    failures = failures_in_logs(source.logs)
    studies: list[Study] = []
    for path in sorted(root.rglob("*.json")):
        report = read_report(path)
        if report is None:
            continue
        name = path.name.removesuffix(".json")
        rel_dir = folder_of(path, root)
        outputs = report.outputs if isinstance(report.outputs, dict) else {}
        seg_name = str(outputs.get("segmentation") or f"{name}{SEG_SUFFIX}")
        overlay_name = str(outputs.get("overlay") or f"{name}_overlay.png")
        study = Study(name=name, rel_dir=rel_dir, status="ok", report=report,
                      report_rel=path.relative_to(root).as_posix())
        seg = path.parent / PurePosixPath(seg_name).name
        if seg.is_file():
            study.seg_rel = seg.relative_to(root).as_posix()
        else:
            study.status, study.reason = "incomplete", f"the report names {seg.name}, which is not in the folder"
        if (path.parent / overlay_name).is_file():
            study.overlay_rel = (path.parent / overlay_name).relative_to(root).as_posix()
        attach_ct(study, str(report.input or ""), source, inputs)
        studies.append(study)
    reported = {s.name for s in studies}
    for seg in sorted(root.rglob(f"*{SEG_SUFFIX}")):
        name = seg.name[: -len(SEG_SUFFIX)]
        if name in reported:  # also the copies an export operator makes of reported label maps
            continue
        reported.add(name)
        study = Study(name=name, rel_dir=folder_of(seg, root),
                      status="incomplete", reason=f"label map without its report ({name}.json)",
                      seg_rel=seg.relative_to(root).as_posix())
        attach_ct(study, "", source, inputs)
        studies.append(study)
    shown = {s.ct for s in studies if s.ct is not None}
    for src in inputs:
        name = stem(src)
        if name in reported:
            continue
        reported.add(name)
        if study := unprocessed(src, source.inputs, failures.get(name), shown):
            studies.append(study)
            shown |= {study.ct} if study.ct else set()
    return studies


def unprocessed(src: Path, inputs: Path | None, failure: str | None, shown: set[Path]) -> Study | None:
    """The input ``src`` that has no result, as a failed study with its CT; None when it is a link to a study
    already shown (the operator processes a file reached twice once)."""
    name = stem(src)
    try:
        ct = ct_file(inputs.resolve(), src) if inputs else None
    except Outside:
        why = link_out(src, inputs or src.parent)
        return Study(name=name, rel_dir="", status="failed", reason=why, ct_problem=why)
    if ct is not None and ct in shown:
        return None
    reason = failure or "no result in the folder (not processed yet, or failed: see the operator's log)"
    return Study(name=name, rel_dir="", status="failed", reason=reason, ct=ct,
                 ct_problem="" if ct else f"{src.name} is not a NIfTI file")


def attach_ct(study: Study, report_input: str, source: Source, inputs: list[Path]) -> None:
    study.ct, refused = find_ct(report_input, study.rel_dir, study.name, source.inputs, inputs)
    if refused:
        study.ct_problem = refused
    elif study.ct is None:
        where = f"under {source.inputs}" if source.inputs else "(no input folder given: set INPUT_DIR)"
        study.ct_problem = (f"label map without its CT: no {study.name}.nii.gz / {study.name}.nii {where}"
                            + (f" (the report says {report_input})" if report_input else ""))
