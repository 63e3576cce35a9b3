"""What the pages get as JSON: pure functions from the folders' contents."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from odk import colour_of

from . import runs
from .studies import Source, Study, scan

if TYPE_CHECKING:
    from .server import ViewConfig


def labels_of(report: dict) -> list[dict]:
    """The model's labels as the report names them (value, name, colour, volume, the classes its volume
    includes), ordered by value; the colours are those of the operator's QA overlay (app/overlay.py).

    The volume of a class is the report's ``<name>_volume_ml``, as the operator defines it (app/study.py
    class_volumes): with the model's label_nesting "organ", the organ (the first foreground class) holds the
    classes after it and its volume includes theirs; the voxels of its own label value alone are not shown.
    A report without its ``labels`` (an older operator's) gives its classes by its ``<name>_volume_ml`` keys,
    numbered from 1 in the report's order.
    """
    found = report.get("labels")
    if not isinstance(found, dict) or not found:
        names = [str(k).removesuffix("_volume_ml") for k in report if str(k).endswith("_volume_ml")]
        found = {"background": {"label": 0}} | {n: {"label": i} for i, n in enumerate(names, start=1)}
    out = []
    for name, info in found.items():
        info = info if isinstance(info, dict) else {}
        value = int(info.get("label", 0))
        out.append({"value": value, "name": name, "colour": list((0, 0, 0) if value == 0 else colour_of(value)),
                    "volume_ml": report.get(f"{name}_volume_ml", info.get("volume_ml")), "includes": []})
    out.sort(key=lambda d: d["value"])
    model = report.get("model") if isinstance(report.get("model"), dict) else {}
    foreground = [lb for lb in out if lb["value"] != 0]
    if model.get("label_nesting") == "organ" and foreground:
        foreground[0]["includes"] = [lb["name"] for lb in foreground[1:]]
    return out


def volumes_of(report: dict) -> dict[str, float | None]:
    """``{class name: mL}`` for each foreground class, in label order (the report's ``<name>_volume_ml``)."""
    return {lb["name"]: lb["volume_ml"] for lb in labels_of(report) if lb["value"] != 0}


def url(path: str, source: str, **params: str) -> str:
    return f"{quote(path)}?{urlencode({'source': source, **params})}"


def study_json(study: Study, source: Source) -> dict:
    key = source.key
    r = study.report
    model = r.get("model") if isinstance(r.get("model"), dict) else {}
    return {
        "id": study.id,
        "name": study.name,
        "folder": study.rel_dir,
        "status": study.status,
        "reason": study.reason,
        "shape": r.get("shape"),
        "spacing_mm": r.get("spacing_mm"),
        "orientation": r.get("orientation"),
        "volumes_ml": volumes_of(r),
        "timings_s": r.get("timings_s") or {},
        "transport": r.get("transport"),
        "model": f"{model.get('name', '')} v{model.get('version', '')}" if model else None,
        "hu_window": model.get("hu_window"),
        "labels": labels_of(r),
        "input": r.get("input"),
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
