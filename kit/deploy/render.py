"""Render a pipeline's Kubernetes bundle: one commented YAML file per concern.

``python -m kit.deploy.render PIPELINE --out DIR`` (settings from the environment, see kit.deploy.settings).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kit.deploy import objects, triton, workflow
from kit.deploy.settings import KubeSettings, dns_name, from_env
from kit.pipeline.model import Pipeline, PipelineError, load_pipeline, params_from

NAMESPACE_FILE = "00-namespace.yaml"
VOLUMES_FILE = "10-volumes.yaml"
LOADER_FILE = "20-models-loader.yaml"
TRITON_FILE = "30-triton.yaml"
WORKFLOW_FILE = "40-workflow.yaml"


@dataclass(frozen=True)
class Manifest:
    filename: str
    comment: str  # the file's header (without '# ')
    objects: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Bundle:
    pipeline: Pipeline
    settings: KubeSettings
    manifests: tuple[Manifest, ...]
    triton: triton.TritonSpec | None

    def manifest(self, filename: str) -> Manifest | None:
        return next((mf for mf in self.manifests if mf.filename == filename), None)

    @property
    def cluster_files(self) -> list[str]:
        return [mf.filename for mf in self.manifests if mf.filename not in (LOADER_FILE, WORKFLOW_FILE)]


def bundle(pipeline: Pipeline, s: KubeSettings) -> Bundle:
    """Every manifest of ``pipeline``; PipelineError (one line) for what Kubernetes cannot express."""
    name = dns_name(pipeline.name, 50)
    spec = triton.triton_spec(pipeline, s)
    wf = workflow.manifest(pipeline, s)
    claims = [objects.claim(workflow.PAYLOAD_VOLUME, s.payload_size, s, name)]
    if spec:
        claims.append(objects.claim("models", s.models_size, s, name))
    manifests = [
        Manifest(NAMESPACE_FILE, f"The namespace of pipeline '{pipeline.name}' (NAMESPACE={s.namespace}).",
                 (objects.namespace(s, name),)),
        Manifest(VOLUMES_FILE, "Shared volumes (ReadWriteMany: every operator pod mounts them).\n"
                 "payloads: the job inputs and each run's outputs, <workflow>/<operator>/<output>.\n"
                 + ("models: the Triton model repository, filled from MODELS_DIR by `make deploy`.\n" if spec else "")
                 + "Storage class and sizes: STORAGE_CLASS, PAYLOAD_SIZE, MODELS_SIZE.", tuple(claims)),
    ]
    if spec:
        manifests += [
            Manifest(LOADER_FILE, "Holds the models volume open so that `make deploy` can copy MODELS_DIR into it:\n"
                     "  kubectl cp MODELS_DIR/<model> <namespace>/models-loader:/models/<model>\n"
                     "then it is deleted (the Clara platform's /clara/common/models step).",
                     (objects.models_loader(spec.image, s, name, pipeline.pull_secrets),)),
            Manifest(TRITON_FILE, "Triton Inference Server serving the models volume, as in Triton's Kubernetes\n"
                     f"example; operators reach it at {triton.grpc_uri(s.namespace)} (NVIDIA_TRITON_GRPCURI).\n"
                     + (f"Models the pipeline asks for: {', '.join(spec.models)}." if spec.models
                        else "The pipeline names no models: Triton serves all of MODELS_DIR."),
                     (triton.deployment(spec, s, name, pipeline.pull_secrets), triton.service(s, name))),
        ]
    manifests.append(Manifest(WORKFLOW_FILE, f"Pipeline '{pipeline.name}' ({pipeline.path}, api-version "
                              f"{pipeline.api_version}) as an Argo Workflow,\n"
                              f"operators in order: {', '.join(pipeline.order())}.\n"
                              "Created with `kubectl create` (a new run, a new name, each time); the input is\n"
                              "the 'payload' parameter, a folder in the payloads volume.", (wf,)))
    return Bundle(pipeline=pipeline, settings=s, manifests=tuple(manifests), triton=spec)


def text(mf: Manifest) -> str:
    head = "".join(f"# {line}\n" if line else "#\n" for line in mf.comment.splitlines())
    docs = [f"# {obj['kind']} {obj['metadata'].get('name') or obj['metadata'].get('generateName')}\n"
            + yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=100) for obj in mf.objects]
    return head + "---\n" + "---\n".join(docs)


def write(b: Bundle, out: Path) -> list[Path]:
    """Write the bundle into ``out`` (old *.yaml there removed first, so the folder is exactly the bundle)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.yaml"):
        old.unlink()
    paths = []
    for mf in b.manifests:
        path = out / mf.filename
        path.write_text(text(mf), encoding="utf-8")
        paths.append(path)
    return paths


def load(path: Path) -> list[dict[str, Any]]:
    """The objects of one rendered file."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kit.deploy.render", description=__doc__.splitlines()[0])
    ap.add_argument("pipeline", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        paths = write(bundle(load_pipeline(args.pipeline, params_from(os.environ), os.environ), from_env()), args.out)
    except PipelineError as exc:
        for problem in exc.problems:
            print(problem)
        print(f"[odk] error: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
