"""The plain cluster objects of a deployment: Namespace, the payload and models volumes, the models loader."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kit.deploy.settings import KubeSettings

PIPELINE_LABEL = "odk/pipeline"
LOADER = "models-loader"


def labels(pipeline: str) -> dict[str, str]:
    return {"app.kubernetes.io/part-of": "odk", PIPELINE_LABEL: pipeline}


def meta(name: str, namespace: str | None, lab: Mapping[str, str]) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name}
    if namespace:
        m["namespace"] = namespace
    m["labels"] = dict(lab)
    return m


def quantity(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def resources(requests: Mapping[str, float]) -> dict[str, Any]:
    """Clara requests (cpu cores, memory in MB, gpu count) as Kubernetes requests/limits."""
    req: dict[str, str] = {}
    if requests.get("cpu"):
        req["cpu"] = quantity(requests["cpu"])
    if requests.get("memory"):
        req["memory"] = f"{quantity(requests['memory'])}Mi"
    out: dict[str, Any] = {"requests": req} if req else {}
    if requests.get("gpu"):  # an extended resource: its limit is what is scheduled on
        out["limits"] = {"nvidia.com/gpu": quantity(requests["gpu"])}
    return out


def namespace(s: KubeSettings, pipeline: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(s.namespace, None, labels(pipeline))}


def claim(name: str, size: str, s: KubeSettings, pipeline: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": size}}}
    if s.storage_class:
        spec["storageClassName"] = s.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta(name, s.namespace, labels(pipeline)),
            "spec": spec}


def models_loader(image: str, s: KubeSettings, pipeline: str, pull_secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """A pod that only holds the models volume open, so that ``kubectl cp`` can fill it (the Triton image:
    it has ``tar``, which ``kubectl cp`` needs, and the cluster pulls it anyway)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta(LOADER, s.namespace, {**labels(pipeline), "app.kubernetes.io/name": LOADER}),
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": s.triton_uid, "runAsGroup": s.triton_uid,
                                "fsGroup": s.triton_uid},
            "containers": [{"name": "loader", "image": image, "imagePullPolicy": "IfNotPresent",
                            "command": ["sleep", "3600"],
                            "volumeMounts": [{"name": "models", "mountPath": "/models"}],
                            "securityContext": {"allowPrivilegeEscalation": False}}],
            "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}],
        },
    }
    if pull_secrets:
        pod["spec"]["imagePullSecrets"] = [{"name": n} for n in pull_secrets]
    return pod
