"""Triton on Kubernetes, modelled on Triton's own example (server repo, deploy/k8s-onprem): a Deployment
running ``tritonserver --model-repository=/models`` on the shared models volume, and a Service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kit.deploy.objects import labels, meta, resources
from kit.deploy.settings import DEFAULT_TRITON_IMAGE, KubeSettings
from kit.pipeline.model import Pipeline, PipelineError
from kit.pipeline.wiring import is_triton

NAME = "triton"
PORTS = (("http", 8000), ("grpc", 8001), ("metrics", 8002))
SHM_SIZE = "1Gi"
DEFAULT_ARGS = ("tritonserver", "--model-repository=/models")
SERVICE_DATA = "$(NVIDIA_CLARA_SERVICE_DATA_PATH)/models"  # where Clara mounted the models for a service
POD_LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "inference-server"}


@dataclass(frozen=True)
class TritonSpec:
    image: str
    gpu: bool
    requests: dict[str, float]
    models: tuple[str, ...]  # the models operators ask for (empty: all of MODELS_DIR)
    args: tuple[str, ...] = DEFAULT_ARGS

    @property
    def health(self) -> str:
        """Health endpoints: KServe v2 (/v2/health/...), or TRTIS's /api/health/... for `trtserver`."""
        return "/api/health" if self.args[:1] == ("trtserver",) else "/v2/health"


def needs_triton(pipeline: Pipeline) -> bool:
    return any(op.models or op.services for op in pipeline.operators)


def triton_spec(pipeline: Pipeline, settings: KubeSettings) -> TritonSpec | None:
    """Image, GPU and requests of the pipeline's Triton; None when no operator uses models or services.
    A service that is not Triton cannot be expressed here: PipelineError (one line)."""
    if not needs_triton(pipeline):
        return None
    services = [s for op in pipeline.operators for s in op.services]
    for op in pipeline.operators:
        for s in op.services:
            if not is_triton(s.image, s.name):
                raise PipelineError(f"operator '{op.name}': service '{s.name}' ({s.image}) is not Triton; only "
                                    "Triton services are deployed to Kubernetes (as the shared 'triton' Service)")
    image = settings.triton_image or next((f"{s.image}:{s.tag}" for s in services), DEFAULT_TRITON_IMAGE)
    requests: dict[str, float] = {}
    for s in services:
        for key, value in s.requests.items():
            requests[key] = max(requests.get(key, 0), value)
    gpu = bool(requests.get("gpu")) or any(op.requests.get("gpu") for op in pipeline.operators if op.models)
    models = tuple(dict.fromkeys(m for op in pipeline.operators for m in op.models))
    command = next((s.command for s in services if s.command), ())
    args = tuple(a.replace(SERVICE_DATA, "/models") for a in command) if command and not settings.triton_image \
        else DEFAULT_ARGS
    return TritonSpec(image=image, gpu=gpu, requests=requests, models=models, args=args)


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "failureThreshold": failures}


def deployment(spec: TritonSpec, s: KubeSettings, pipeline: str, pull_secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    req = dict(spec.requests)
    if spec.gpu:
        req["gpu"] = max(req.get("gpu", 0), 1)
    container = {
        "name": "tritonserver",
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "args": list(spec.args),
        "ports": [{"name": name, "containerPort": port} for name, port in PORTS],
        # Startup: up to 30 x 10 s to load the models; then ready/live as Triton's example checks them.
        "startupProbe": _probe(f"{spec.health}/ready", 10, 30),
        "readinessProbe": _probe(f"{spec.health}/ready", 5, 3),
        "livenessProbe": _probe(f"{spec.health}/live", 10, 3),
        "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True},
                         {"name": "dshm", "mountPath": "/dev/shm"}],
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    if res := resources(req):
        container["resources"] = res
    pod: dict[str, Any] = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": s.triton_uid, "runAsGroup": s.triton_uid,
                            "fsGroup": s.triton_uid},
        "containers": [container],
        "volumes": [
            {"name": "models", "persistentVolumeClaim": {"claimName": "models"}},
            # Triton's Python backend talks to its stubs through /dev/shm: 64 MB by default is too small.
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}},
        ],
    }
    if pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in pull_secrets]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(NAME, s.namespace, {**labels(pipeline), **POD_LABELS}),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(POD_LABELS)},
            "template": {
                "metadata": {"labels": dict(POD_LABELS)},
                "spec": pod,
            },
        },
    }


def service(s: KubeSettings, pipeline: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(NAME, s.namespace, {**labels(pipeline), **POD_LABELS}),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(POD_LABELS),
            "ports": [{"name": name, "port": port, "targetPort": name} for name, port in PORTS],
        },
    }


def grpc_uri(namespace: str) -> str:
    return f"{NAME}.{namespace}.svc:8001"


def http_uri(namespace: str) -> str:
    return f"{NAME}.{namespace}.svc:8000"
