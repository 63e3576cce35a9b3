"""The pipeline as an Argo Workflow, built with hera: one container template per operator, a DAG from `from:`.

Each run gets its own folders in the payload volume: ``<workflow>/<operator>/<output>`` (as
``make run-pipeline`` lays out OUTPUT_DIR), the job's input is the ``payload`` parameter (a folder in
the same volume), and NVIDIA_CLARA_INPUTPATHS/OUTPUTPATHS are what kit.pipeline.wiring gives operators.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from hera.workflows import DAG, Container, Parameter, Task, Workflow
from hera.workflows import models as m

from kit.deploy import triton
from kit.deploy.objects import labels, resources
from kit.deploy.settings import KubeSettings, dns_name
from kit.pipeline import wiring
from kit.pipeline.model import Operator, Pipeline, PipelineError

ENTRYPOINT = "pipeline"
PAYLOAD_VOLUME = "payloads"
RUN = "{{workflow.name}}"
PAYLOAD = "{{workflow.parameters.payload}}"
_OUT_ROOT = Path("/odk-payload-volume")  # a stand-in root: only paths relative to it are used


def refuse_in_memory(op: Operator) -> None:
    """Entries without a path (typed arrays, strings, primitives) are passed in memory by Clara: no volume
    can carry them."""
    for kind, entries in (("input", op.inputs), ("output", op.outputs)):
        for e in entries:
            if e.path is None:
                raise PipelineError(f"operator '{op.name}': {e.io_type} {kind} '{e.name or '?'}' has no path "
                                    "(Clara passes it in memory); Kubernetes pods only share folders, so give it "
                                    "a path and type stream")


def plan(pipeline: Pipeline, op: Operator) -> wiring.Plan:
    refuse_in_memory(op)
    return wiring.plan(pipeline, op, _OUT_ROOT / "payload", _OUT_ROOT)


def sub_path(entry: wiring.Entry) -> str:
    if entry.name == "payload":
        return PAYLOAD
    return f"{RUN}/{PurePosixPath(entry.host).relative_to(_OUT_ROOT)}"


def operator_env(pipeline: Pipeline, p: wiring.Plan, namespace: str) -> dict[str, str]:
    """What the platform gives the operator (wiring.operator_env), Triton at its Service address."""
    op = p.operator
    uses_triton = bool(op.models or op.services)
    address = wiring.Triton(grpc=triton.grpc_uri(namespace) if uses_triton else None,
                            http=triton.http_uri(namespace) if uses_triton else None)
    return wiring.operator_env(p, False, "{{workflow.uid}}", RUN, address)


def container(pipeline: Pipeline, op: Operator, s: KubeSettings) -> Container:
    p = plan(pipeline, op)
    mounts = [m.VolumeMount(name=PAYLOAD_VOLUME, mount_path=e.path, sub_path=sub_path(e), read_only=True)
              for e in p.inputs]
    mounts += [m.VolumeMount(name=PAYLOAD_VOLUME, mount_path=e.path, sub_path=sub_path(e)) for e in p.outputs]
    res = resources(op.requests)
    return Container(
        name=dns_name(op.name),
        image=f"{op.image}:{op.tag}",
        image_pull_policy="IfNotPresent",
        # Clara passes a pipeline `command` to the image's ENTRYPOINT: Kubernetes `args` does the same.
        args=list(op.command) or None,
        env=[m.EnvVar(name=k, value=v) for k, v in operator_env(pipeline, p, s.namespace).items()],
        resources=m.ResourceRequirements(**res) if res else None,
        volume_mounts=mounts,
        retry_strategy=m.RetryStrategy(limit=str(s.retries), retry_policy="OnTransientError",
                                       backoff=m.Backoff(duration="30s", factor=2)),
        labels={"odk/operator": dns_name(op.name)},
    )


def build(pipeline: Pipeline, s: KubeSettings) -> Workflow:
    name = dns_name(pipeline.name, 50)
    upstream = pipeline.upstream()
    with Workflow(
        generate_name=f"{name}-",
        namespace=s.namespace,
        labels=labels(name),
        entrypoint=ENTRYPOINT,
        arguments=[Parameter(name="payload", value=s.payload_path,
                             description="the job's input: a folder in the payload volume")],
        active_deadline_seconds=s.deadline_s,
        ttl_strategy=m.TTLStrategy(seconds_after_completion=s.ttl_s),
        pod_gc=m.PodGC(strategy="OnPodSuccess"),
        # fsGroup: the payload volume is group-writable by every step's user, whichever uid its image runs as.
        security_context=m.PodSecurityContext(fs_group=s.fs_group),
        image_pull_secrets=[m.LocalObjectReference(name=n) for n in pipeline.pull_secrets] or None,
        volumes=[m.Volume(name=PAYLOAD_VOLUME,
                          persistent_volume_claim=m.PersistentVolumeClaimVolumeSource(claim_name=PAYLOAD_VOLUME))],
    ) as w:
        templates = {op.name: container(pipeline, op, s) for op in pipeline.operators}
        with DAG(name=ENTRYPOINT):
            for op_name in pipeline.order():
                deps = [dns_name(u) for u in upstream[op_name]]
                Task(name=dns_name(op_name), template=templates[op_name], depends=" && ".join(deps) or None)
    return w


def manifest(pipeline: Pipeline, s: KubeSettings) -> dict[str, Any]:
    return build(pipeline, s).to_dict()
