"""Pipeline -> validated bundle on disk: what `make deploy`, `make validate` and RUNTIME=kube share."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from kit.deploy import check
from kit.deploy.render import Bundle, bundle, write
from kit.deploy.settings import KubeSettings, dns_name
from kit.paths import ROOT
from kit.pipeline.model import PipelineError, load_pipeline


class BundleError(PipelineError):
    """The rendered manifests do not validate: one line, plus every finding as ``problems``."""


def default_dir(pipeline_name: str, run_dir: Path | None = None) -> Path:
    return (run_dir or Path(os.environ.get("ODK_RUN_DIR") or ROOT / ".run")) / "deploy" / dns_name(pipeline_name)


def prepare(pipeline_path: Path, s: KubeSettings, out: Path | None = None,
            run_dir: Path | None = None, params: Mapping[str, str] | None = None,
            environ: Mapping[str, str] | None = None) -> tuple[Bundle, Path]:
    """Validate the pipeline, render its bundle into ``out`` (default .run/deploy/<name>/) and validate that.
    Raises PipelineError (the pipeline, or what Kubernetes cannot express) or BundleError."""
    b = bundle(load_pipeline(pipeline_path, params, environ), s)
    folder = out or default_dir(b.pipeline.name, run_dir)
    files = write(b, folder)
    findings = check.check_files(files, s.kube_version)
    if findings:
        raise BundleError(f"{len(findings)} problem(s) in the manifests rendered into {folder} (Kubernetes "
                          f"{s.kube_version}); nothing was applied", tuple(str(f) for f in findings))
    return b, folder
