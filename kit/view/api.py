"""What the pages get as JSON: pure functions from the folders' contents."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

import odk
from odk import colour_of

from . import runs
from .studies import Source, Study, scan

if TYPE_CHECKING:
    from .server import ViewConfig


def labels_of(report: odk.StudyResult) -> list[dict]:
    """The model's labels as the report names them (value, name, colour, volume, the classes its volume
    includes), ordered by value; the colours are those of the operator's QA overlay (odk.render_overlay).

    The volume of a class is the report's ``<name>_volume_ml``, as the operator defines it (odk.label_volumes):
    with the model's label_nesting "organ", the organ (the first foreground class) holds the classes after it
    and its volume includes theirs; the voxels of its own label value alone are not shown.
    A report without its ``labels`` (an older operator's) gives its classes by its ``<name>_volume_ml`` keys,
    numbered from 1 in the report's order.
    """
    if not isinstance(report, odk.LabelMapResult):
        return []
    found: dict[str, tuple[int, float | None]] = {n: (s.label, s.volume_ml) for n, s in report.labels.items()}
    if not found:
        found = {"background": (0, None)} | {n: (i, None) for i, n in enumerate(report.volumes_ml, start=1)}
    out = []
    for name, (value, own_ml) in found.items():
        out.append({"value": value, "name": name, "colour": list((0, 0, 0) if value == 0 else colour_of(value)),
                    "volume_ml": report.volumes_ml.get(name, own_ml), "includes": []})
    out.sort(key=lambda d: d["value"])
    model = report.model if isinstance(report.model, dict) else {}
    foreground = [lb for lb in out if lb["value"] != 0]
    if model.get("label_nesting") == "organ" and foreground:
        foreground[0]["includes"] = [lb["name"] for lb in foreground[1:]]
    return out


def volumes_of(report: odk.StudyResult) -> dict[str, float | None]:
    """``{class name: mL}`` for each foreground class, in label order (the report's ``<name>_volume_ml``)."""
    return {lb["name"]: lb["volume_ml"] for lb in labels_of(report) if lb["value"] != 0}


def url(path: str, source: str, **params: str) -> str:
    return f"{quote(path)}?{urlencode({'source': source, **params})}"


def study_json(study: Study, source: Source) -> dict:
    key = source.key
    r = study.report
    model = r.model if isinstance(r.model, dict) else {}
    return {
        "id": study.id,
        "name": study.name,
        "folder": study.rel_dir,
        "status": study.status,
        "reason": study.reason,
        "shape": r.shape or None,
        "spacing_mm": r.spacing_mm or None,
        "orientation": r.orientation or None,
        "volumes_ml": volumes_of(r),
        "timings_s": r.timings_s or {},
        "transport": r.transport or None,
        "model": f"{model.get('name', '')} v{model.get('version', '')}" if model else None,
        "hu_window": model.get("hu_window"),
        "labels": labels_of(r),
        "input": r.input or None,
        "viewable": bool(study.seg_rel and study.ct is not None),
        "ct_problem": study.ct_problem,
        "ct_name": study.ct.name if study.ct else None,
        "ct_url": url("/ct", key, id=study.id) if study.ct else None,
        "seg_url": url(f"/files/{study.seg_rel}", key) if study.seg_rel else None,
        "report_url": url(f"/files/{study.report_rel}", key) if study.report_rel else None,
        "overlay_url": url(f"/files/{study.overlay_rel}", key) if study.overlay_rel else None,
        "view_url": url("/study", key, id=study.id),
    }


def run_json(run: runs.Run) -> dict:
    data = run.to_json()
    log_source = run.logs_source
    for op in data["operators"]:
        op["log_url"] = url(f"/logs/{op['log']}", log_source) if op["log"] else None
    data["log_url"] = url(f"/logs/{run.log}", log_source) if run.log else None
    data["results_url"] = f"/?{urlencode({'source': run.source})}" if run.source else None
    return data


def problems_of(source: Source, found: list[Study]) -> list[str]:
    problems = []
    if not source.results.is_dir():
        problems.append(f"The results folder {source.results} does not exist: run 'make demo' (or make run-local /"
                        " make run-pipeline) first, or start 'make view OUTPUT_DIR=<results folder>'.")
    elif not any(s.report_rel or s.seg_rel for s in found):
        problems.append(f"No results in {source.results}: no study report (<stem>.json) and no label map "
                        "(<stem>_seg.nii.gz). Run 'make demo' (or make run-local / make run-pipeline) to make some, "
                        "or start 'make view OUTPUT_DIR=<results folder>'.")
    if source.inputs is not None and not source.inputs.is_dir():
        problems.append(f"The input folder {source.inputs} does not exist, so no CT can be shown: set INPUT_DIR.")
    return problems


def overview(cfg: ViewConfig, source: Source) -> dict:
    found = scan(source)
    all_runs: list[runs.Run] = []
    if source.key == "out":
        last = runs.pipeline_run(cfg.pipeline_logs)
        all_runs = ([last] if last else []) + runs.listener_jobs(cfg.jobs_root)
    return {
        "source": source.key,
        "title": source.title,
        "results": str(source.results),
        "inputs": str(source.inputs) if source.inputs else None,
        "studies": [study_json(s, source) for s in found],
        "runs": [run_json(r) for r in all_runs],
        "problems": problems_of(source, found),
    }
