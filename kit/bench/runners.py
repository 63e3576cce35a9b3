"""One measured run of each contender as a child process (wall time includes process start; peak RSS is
that process's own): the operator under its driver, the in-process limit, the MONAI peer."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from kit.bench.measure import BenchError, run_measured
from kit.bench.model import BenchModel
from kit.paths import ROOT
from odk import OperatorConfig, stem


@dataclass(frozen=True)
class Job:
    """What every contender is asked to do: one study, one model, the operator's window settings."""

    study: Path
    model: BenchModel
    cfg: OperatorConfig
    work: Path  # scratch folder for outputs and logs
    python: str = sys.executable

    def worker_args(self, out_dir: Path, result: Path) -> list[str]:
        return ["--input", str(self.study), "--model-dir", str(self.model.model_dir), "--out-dir", str(out_dir),
                "--json", str(result), "--overlap", str(self.cfg.overlap), "--blend", self.cfg.blend,
                "--batch-size", str(self.cfg.batch_size),
                "--largest-component", "1" if self.cfg.largest_component else "0"]


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def operator_env(job: Job, grpc_url: str, transport: str, out_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "NVIDIA_CLARA_INPUTPATHS": f"payload:{job.study.parent.resolve()}",
        "NVIDIA_CLARA_OUTPUTPATHS": f"op/out:{out_dir.resolve()}",
        "NVIDIA_CLARA_NOSYNCLOCK": "TRUE",
        "NVIDIA_TRITON_GRPCURI": grpc_url,
        "TRITON_TRANSPORT": transport,
        "TRITON_MODEL_NAME": job.model.name,
    })
    return env


def _operator_report(out_dir: Path, job: Job) -> dict:
    name = stem(job.study)
    report = json.loads((out_dir / f"{name}.json").read_text())
    if not (out_dir / f"{name}_seg.nii.gz").is_file():
        raise BenchError(f"the operator wrote no {name}_seg.nii.gz in {out_dir}")
    return report


def run_operator(job: Job, grpc_url: str, transport: str, tag: str, profile_to: Path | None = None) -> dict:
    """``python -u -m app`` on the study; with ``profile_to``, its execute step under pyinstrument instead."""
    out_dir = _fresh(job.work / f"operator-{tag}")
    cmd = [job.python, "-u", "-m", "app"]
    if profile_to is not None:
        cmd = [job.python, "-u", "-m", "kit.bench.profile_operator", "--input", str(job.study.parent),
               "--output", str(out_dir), "--report", str(profile_to)]
    m = run_measured(cmd, operator_env(job, grpc_url, transport, out_dir), job.work / f"operator-{tag}.log",
                     cwd=ROOT)
    report = _operator_report(out_dir, job)
    if report.get("transport") != transport:
        raise BenchError(f"the operator used transport {report.get('transport')}, not {transport}")
    return {"timings_s": report["timings_s"], "wall_s": round(m.wall_s, 4),
            "peak_rss_mb": round(m.peak_rss_mb, 1), "transport": report["transport"],
            "volumes_ml": _class_volumes(report, job.model.labels)}


def _class_volumes(report: dict, labels: tuple[str, ...]) -> dict[str, float | None]:
    """The operator report's ``<class>_volume_ml`` (odk.label_volumes) of each foreground class the
    model names, in label order; None for a class the report lacks."""
    return {name: report.get(f"{name}_volume_ml") for name in labels[1:]}


def run_worker(job: Job, module: str, tag: str, extra: tuple[str, ...] = ()) -> dict:
    """``python -m kit.bench.limit|peer [extra]``: its JSON result plus wall time and peak RSS."""
    out_dir = _fresh(job.work / f"{tag}-out")
    result = job.work / f"{tag}.json"
    result.unlink(missing_ok=True)
    m = run_measured([job.python, "-u", "-m", module, *extra, *job.worker_args(out_dir, result)], dict(os.environ),
                     job.work / f"{tag}.log", cwd=ROOT)
    data = json.loads(result.read_text())
    data.update({"wall_s": round(m.wall_s, 4), "peak_rss_mb": round(m.peak_rss_mb, 1)})
    return data
