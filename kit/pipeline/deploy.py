"""Deploy a pipeline with the ``clara`` CLI (``make deploy``).

validate -> copy the models to the Clara model repository -> ``clara create pipelines -p FILE`` ->
pipeline id -> ``clara create job -p ID -n NAME -f INPUT_DIR`` -> job id -> ``clara start job -j ID``.
Ids are the first 32-hex-digit token of each command's output. With ``--dry-run`` every command is
printed instead. The ids are saved in RUN_DIR/last.json (and RUN_DIR/<job-id>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from kit.paths import run_dir
from kit.pipeline.launch import DEFAULT_JOB_NAME, shown
from kit.pipeline.model import Pipeline, PipelineError, load_pipeline

ID_RE = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{32}(?![0-9A-Fa-f])")


class DeployError(Exception):
    """A step failed; the message is the one line to print."""


@dataclass(frozen=True)
class Deployment:
    pipeline: str
    pipeline_name: str
    pipeline_id: str
    job_name: str
    job_id: str
    input_dir: str
    models: list[str]
    started_at: str


def log(message: str) -> None:
    print(f"[odk] {message}", file=sys.stderr, flush=True)


def first_id(text: str) -> str | None:
    """The first 32-hex-digit token (Clara's pipeline/job ids), lower-cased; None when there is none."""
    m = ID_RE.search(text)
    return m[0].lower() if m else None


def has_registry(image: str) -> bool:
    """True when the image name starts with a registry host (``host.domain/``, ``host:port/``, localhost)."""
    first, slash, _ = image.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def image_warnings(pipeline: Pipeline) -> list[str]:
    images = dict.fromkeys(f"{op.image}:{op.tag}" for op in pipeline.operators)
    images.update(dict.fromkeys(s.image for op in pipeline.operators for s in op.services))
    return [f"image {image} names no registry host: a cluster can only pull it if it is pushed to a registry "
            f"it can reach (tag it e.g. registry.example.com/{image}, push it, and use that name in "
            f"{pipeline.path})" for image in images if not has_registry(image)]


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def step(name: str, argv: Sequence[str], dry_run: bool) -> str:
    """Run one command (or print it with --dry-run); its output; DeployError naming the step on failure."""
    print("+ " + shown(argv), flush=True)
    if dry_run:
        return ""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeployError(f"step '{name}' could not run: {exc}") from None
    output = proc.stdout + proc.stderr
    for line in output.splitlines():
        print(f"  {line}", flush=True)
    if proc.returncode != 0:
        raise DeployError(f"step '{name}' failed (exit {proc.returncode}): {last_line(output)}")
    return output


def model_dirs(models_dir: Path, pipeline: Pipeline) -> list[Path]:
    found = sorted(p for p in models_dir.iterdir() if p.is_dir()) if models_dir.is_dir() else []
    if not found:
        log(f"warning: no models in {models_dir}; nothing is copied to the model repository")
    for wanted in (m for op in pipeline.operators for m in op.models):
        if wanted not in {p.name for p in found}:
            log(f"warning: the pipeline names model '{wanted}', which is not in {models_dir}")
    return found


def deploy(args: argparse.Namespace) -> Deployment | None:
    pipeline = load_pipeline(args.pipeline)
    if os.environ.get("PARAMS", "").strip():
        log("warning: PARAMS is not passed to a Clara cluster (`clara create pipelines` takes the file as it is): "
            "the job uses the parameters' defaults in the file")
    for warning in image_warnings(pipeline):
        log(f"warning: {warning}")
    clara = args.clara or ("clara" if shutil.which("clara") else None)
    if clara is None and not args.dry_run:
        raise DeployError("the clara CLI is not on PATH; install the Clara Deploy CLI (or set CLARA_CLI=/path/to/"
                          "clara), or use DRY_RUN=1 to print the commands")
    clara = clara or "clara"
    if not args.input_dir.is_dir():
        raise DeployError(f"INPUT_DIR={args.input_dir} is not a folder; it is the job's payload")
    models = model_dirs(args.models_dir, pipeline)
    if models:
        step("copy models", ["mkdir", "-p", str(args.clara_models_dir)], args.dry_run)
        step("copy models", ["cp", "-R", *map(str, models), f"{args.clara_models_dir}/"], args.dry_run)
    out = step("create pipeline", [clara, "create", "pipelines", "-p", str(args.pipeline)], args.dry_run)
    pipeline_id = "<pipeline-id>" if args.dry_run else first_id(out)
    if pipeline_id is None:
        raise DeployError(f"step 'create pipeline' printed no pipeline id (32 hex digits): {last_line(out)}")
    out = step("create job", [clara, "create", "job", "-p", pipeline_id, "-n", args.job_name,
                              "-f", str(args.input_dir)], args.dry_run)
    job_id = "<job-id>" if args.dry_run else first_id(out)
    if job_id is None:
        raise DeployError(f"step 'create job' printed no job id (32 hex digits): {last_line(out)}")
    step("start job", [clara, "start", "job", "-j", job_id], args.dry_run)
    if args.dry_run:
        log("DRY_RUN=1: nothing was run")
        return None
    return Deployment(pipeline=str(args.pipeline), pipeline_name=pipeline.name, pipeline_id=pipeline_id,
                      job_name=args.job_name, job_id=job_id, input_dir=str(args.input_dir),
                      models=[p.name for p in models], started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def save(deployment: Deployment, run_dir: Path) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(asdict(deployment), indent=2) + "\n"
    (run_dir / f"{deployment.job_id}.json").write_text(text)
    last = run_dir / "last.json"
    tmp = last.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(last)
    return last


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ
    ap = argparse.ArgumentParser(prog="python -m kit.pipeline.deploy", description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", type=Path, default=Path(env.get("PIPELINE") or "def/one-operator-pipeline.yml"))
    ap.add_argument("--job-name", default=env.get("JOB_NAME") or DEFAULT_JOB_NAME)
    ap.add_argument("--input-dir", type=Path, default=Path(env.get("INPUT_DIR") or "local/input"))
    ap.add_argument("--models-dir", type=Path, default=Path(env.get("MODELS_DIR") or "local/models"))
    ap.add_argument("--clara-models-dir", type=Path,
                    default=Path(env.get("CLARA_MODELS_DIR") or "/clara/common/models"))
    ap.add_argument("--clara", default=env.get("CLARA_CLI") or None, help="the clara CLI (default: on PATH)")
    ap.add_argument("--run-dir", type=Path,
                    default=run_dir("deploy"))
    ap.add_argument("--dry-run", action="store_true", default=env.get("DRY_RUN", "0") == "1")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        deployment = deploy(args)
    except (PipelineError, DeployError) as exc:
        for problem in getattr(exc, "problems", ()):
            print(problem)
        log(f"error: {exc}")
        return 1
    if deployment is not None:
        saved = save(deployment, args.run_dir)
        print(f"pipeline id: {deployment.pipeline_id}\njob id:      {deployment.job_id}")
        log(f"job '{deployment.job_name}' started; ids saved in {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
