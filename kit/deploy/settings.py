"""What a Kubernetes deployment can be told (namespace, storage, Triton image, limits), from the environment."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from kit.pipeline.launch import DEFAULT_JOB_NAME

DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:26.05-py3"  # the image of make triton TRITON_MODE=container
DEFAULT_KUBE_VERSION = "1.34"


@dataclass(frozen=True)
class KubeSettings:
    namespace: str = "odk"
    job_name: str = DEFAULT_JOB_NAME
    payload: str = ""  # the payload's folder in the payload volume; "" = <job name>/input
    storage_class: str = ""  # "" = the cluster's default class
    payload_size: str = "20Gi"
    models_size: str = "5Gi"
    triton_image: str = ""  # "" = the pipeline's Triton service image, else DEFAULT_TRITON_IMAGE
    triton_uid: int = 1000  # Triton's own Kubernetes example runs as uid 1000 (KUBE_TRITON_UID)
    fs_group: int = 10001  # the operator image's group (KUBE_FS_GROUP)
    deadline_s: int = 6 * 3600
    ttl_s: int = 24 * 3600
    retries: int = 2
    kube_version: str = DEFAULT_KUBE_VERSION

    @property
    def payload_path(self) -> str:
        return self.payload or f"{dns_name(self.job_name)}/input"


def dns_name(name: str, limit: int = 63) -> str:
    """A pipeline/operator name as a DNS-1123 label: lower case, '_' -> '-', at most ``limit`` characters."""
    return name.lower().replace("_", "-")[:limit].strip("-")


def from_env(env: Mapping[str, str] | None = None) -> KubeSettings:
    e = os.environ if env is None else env
    d = KubeSettings()
    return KubeSettings(
        namespace=e.get("NAMESPACE") or d.namespace,
        job_name=e.get("JOB_NAME") or d.job_name,
        payload=e.get("KUBE_PAYLOAD") or d.payload,
        storage_class=e.get("STORAGE_CLASS") or d.storage_class,
        payload_size=e.get("PAYLOAD_SIZE") or d.payload_size,
        models_size=e.get("MODELS_SIZE") or d.models_size,
        triton_image=e.get("KUBE_TRITON_IMAGE") or d.triton_image,
        triton_uid=int(e.get("KUBE_TRITON_UID") or d.triton_uid),
        fs_group=int(e.get("KUBE_FS_GROUP") or d.fs_group),
        deadline_s=int(e.get("KUBE_DEADLINE_S") or d.deadline_s),
        ttl_s=int(e.get("KUBE_TTL_S") or d.ttl_s),
        retries=int(e.get("KUBE_RETRIES") or d.retries),
        kube_version=e.get("KUBE_VERSION") or d.kube_version,
    )
