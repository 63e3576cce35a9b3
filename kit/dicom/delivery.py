"""`make listen-resend JOB=`: the job's delivery operator(s) (register-results) run again, alone, on the
results the job kept in output/, exactly as the pipeline runs them (its payload wiring, its variables, its
log in logs/<operator>.log), on this host."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from kit.dicom import procgroup
from kit.dicom.jobs import Job
from kit.dicom.runner import DELIVERY_MODULE, operator_error
from kit.paths import ROOT
from kit.pipeline import wiring
from kit.pipeline.model import PipelineError, load_pipeline
from kit.pipeline.outputs import fresh
from kit.pipeline.run import Settings, run_operator


def resend(job: Job, destination: str) -> str:
    """Run the delivery operator(s) of the job's pipeline on its kept results; '' when all succeeded, else why
    not (the operator's own last error line)."""
    path = Path(job.status.pipeline)
    path = path if path.is_absolute() else ROOT / path
    declared = load_pipeline(path, {})
    overrides = {"DICOM_DESTINATION": destination} if "DICOM_DESTINATION" in declared.parameters else {}
    pipeline = load_pipeline(path, overrides)
    ops = [op for op in pipeline.operators if DELIVERY_MODULE in op.command]
    if not ops:
        raise PipelineError(f"pipeline {path} has no register-results operator (python -m {DELIVERY_MODULE}); "
                            "nothing to send")
    settings = Settings(runtime="host", engine=None, repo_image="", python=Path(sys.executable),
                        dockerfile=ROOT / "Dockerfile", log_dir=job.folder / "logs", job_name=job.name)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex
    for op in ops:
        plan = wiring.plan(pipeline, op, job.input_dir, job.output_dir)
        missing = [str(e.host) for e in plan.inputs if not e.host.is_dir() or not any(e.host.iterdir())]
        if missing:
            return f"no results kept in {', '.join(missing)}; 'make listen-retry JOB={job.name}' runs the job again"
        for entry in plan.outputs:
            fresh(entry.host)
        env = wiring.operator_env(plan, True, run_id, job.name, wiring.Triton(grpc=None, http=None))
        env[procgroup.MARKER] = str(job.folder)
        if destination:
            env["DICOM_DESTINATION"] = destination
        code, last = run_operator(plan, env, settings, run_id[:8])
        if code != 0:
            own = operator_error(settings.log_dir / f"{op.name}.log") or last
            return f"operator '{op.name}' (exit {code}): {own}"
    return ""
