"""The export operator: one summary (CSV and JSON) of every study the segmentation operator reported.

Run as ``python -u -m app.export`` (the same image as the segmentation operator, another command).
It reads each input entry (normally ``segmentation/segmentation``: the upstream operator's output),
finds the study reports ``<stem>.json`` in it, and writes into its own output folder:

- ``summary.csv`` — one row per study: input entry, study, shape, spacing, the volume (mL) of each of the
  model's classes as the reports name them (``<class>_volume_ml``: liver and lesion for the demo model);
- ``summary.json`` — the same rows, the totals, and the input entries (name and path) it was given;
- ``labels/<sub-folder>/<stem>_seg.nii.gz`` — the label maps next to the summary, at the same relative path
  as in the input entry (``EXPORT_COPY_LABELS``, default on).

A study is named by its report's path relative to its entry, without ``.json`` (``case`` or
``nested/case``), so same-name studies in different sub-folders stay distinct. Two entries holding the same
relative path are an error naming both files, before anything is written; an entry that is the same
folder as an earlier one is read once.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import odk

log = logging.getLogger("app.export")


@dataclass(frozen=True)
class StudyRow:
    entry: str
    study: str
    shape: list[int]
    spacing_mm: list[float]
    volumes_ml: dict[str, float]  # the report's "<class>_volume_ml" entries, in its order
    segmentation: str  # path of the label map relative to the input entry ("" when missing)

    def flat(self) -> dict:
        """The row as the summary writes it: the volume columns in place of ``volumes_ml``."""
        return {"entry": self.entry, "study": self.study, "shape": self.shape, "spacing_mm": self.spacing_mm,
                **self.volumes_ml, "segmentation": self.segmentation}


def volume_columns(rows: list[StudyRow]) -> list[str]:
    """Every volume column of the rows, in the order they first appear (the model's class order)."""
    return list(dict.fromkeys(k for r in rows for k in r.volumes_ml))


class ExportError(odk.OperatorError):
    """A problem that fails the export operator (message says what to do)."""


def read_report(entry_name: str, entry_root: Path, path: Path) -> StudyRow | None:
    """The row of one study report; None for JSON files that are not study reports."""
    data = json.loads(path.read_text(encoding="utf-8"))
    report = odk.result_of(data) if isinstance(data, dict) else None
    if not isinstance(report, odk.LabelMapResult) or not report.volumes_ml:
        return None
    seg_name = report.outputs.get("segmentation") or f"{path.stem}_seg.nii.gz"
    seg = path.with_name(seg_name)
    return StudyRow(
        entry=entry_name,
        study=path.relative_to(entry_root).with_suffix("").as_posix(),
        shape=[int(n) for n in report.shape],
        spacing_mm=[float(s) for s in report.spacing_mm],
        volumes_ml={f"{name}_volume_ml": round(float(v), 3) for name, v in report.volumes_ml.items()},
        segmentation=str(seg.relative_to(entry_root)) if seg.is_file() else "",
    )


def collect(entries: list[tuple[str, Path]]) -> tuple[list[StudyRow], list[str]]:
    """Rows of every study report under the entries, and the reports that could not be read."""
    rows: list[StudyRow] = []
    bad: list[str] = []
    for name, root in distinct_entries(entries):
        for path in sorted(root.rglob("*.json")):
            if path.name.startswith("."):
                continue
            try:
                row = read_report(name, root, path)
            except (OSError, ValueError, TypeError) as exc:
                log.error("%s: not a readable study report: %s", path, exc)
                bad.append(str(path))
                continue
            if row is not None:
                rows.append(row)
    return rows, bad


def distinct_entries(entries: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """The entries without those naming a folder an earlier entry already names (read once, logged)."""
    seen: dict[Path, str] = {}
    kept: list[tuple[str, Path]] = []
    for name, root in entries:
        real = root.resolve()
        if real in seen:
            log.info("input entry %r is the same folder as %r (%s); read once", name, seen[real], root)
            continue
        seen[real] = name
        kept.append((name, root))
    return kept


def label_targets(rows: list[StudyRow], entries: dict[str, Path]) -> dict[str, Path]:
    """Where each label map goes under ``labels/`` (its path relative to its entry) -> its source; two
    different sources for one target are an ExportError naming both."""
    targets: dict[str, Path] = {}
    for row in rows:
        if not row.segmentation:
            continue
        src = entries[row.entry] / row.segmentation
        other = targets.setdefault(row.segmentation, src)
        if other != src:
            raise ExportError(f"label maps {other} and {src} would both be copied to labels/{row.segmentation}; "
                              "give the input entries distinct sub-folders, or set EXPORT_COPY_LABELS=false")
    return targets


def summary_csv(rows: list[StudyRow]) -> str:
    out = io.StringIO()
    fields = ["entry", "study", "shape", "spacing_mm", *volume_columns(rows), "segmentation"]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n", restval="")
    writer.writeheader()
    for row in rows:
        values = row.flat()
        values["shape"] = "x".join(map(str, row.shape))
        values["spacing_mm"] = "x".join(f"{s:g}" for s in row.spacing_mm)
        writer.writerow(values)
    return out.getvalue()


def summary_json(rows: list[StudyRow], entries: list[tuple[str, Path]], job: str, stage: str) -> str:
    return json.dumps({
        "job": job,
        "operator": stage,
        "inputs": [{"name": name, "path": str(path)} for name, path in entries],
        "studies": [r.flat() for r in rows],
        "totals": {"studies": len(rows),
                   **{k: round(sum(r.volumes_ml.get(k, 0.0) for r in rows), 3) for k in volume_columns(rows)}},
    }, indent=2) + "\n"


def copy_labels(targets: dict[str, Path], dest: Path) -> int:
    """Copy each label map to its target under ``dest`` (atomically: temp file, then rename)."""
    for relative, src in targets.items():
        odk.atomic_write_bytes(dest / relative, src.read_bytes())  # compressed label maps: small
    return len(targets)


def export(entries: list[tuple[str, Path]], output: Path, job: str, stage: str, copy: bool = True) -> int:
    """Write the summary of every study under ``entries`` into ``output``; returns the study count."""
    for name, path in entries:
        log.info("input entry %r -> %s", name, path)
    rows, bad = collect(entries)
    if not rows:
        raise ExportError("no study reports (<stem>.json with <class>_volume_ml entries) in the inputs "
                          f"{', '.join(f'{n}:{p}' for n, p in entries)}; run the segmentation operator first")
    targets = label_targets(rows, dict(entries)) if copy else {}
    odk.atomic_write_bytes(output / "summary.csv", summary_csv(rows).encode())
    odk.atomic_write_bytes(output / "summary.json", summary_json(rows, entries, job, stage).encode())
    if copy:
        log.info("copied %d label map(s) to %s", copy_labels(targets, output / "labels"), output / "labels")
    log.info("summary of %d studies: %s", len(rows), output / "summary.csv")
    if bad:
        raise ExportError(f"{len(bad)} report(s) could not be read: {', '.join(bad)}")
    return len(rows)


def execute(run: odk.Run) -> None:
    export(run.entries, run.output, run.job, run.stage, copy=odk.flag(os.environ, "EXPORT_COPY_LABELS", True))


if __name__ == "__main__":
    raise SystemExit(odk.main(execute, example_input="segmentation/segmentation:/input",
                              example_output="export/summary:/output"))
