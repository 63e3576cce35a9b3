"""The rendered container specs as Pods that ``podman kube play`` runs on this machine (pure functions).

podman runs Pods, not Deployments' Services or Argo Workflows, and ignores ``subPath`` on hostPath: so each
mount gets its own hostPath volume (the folder the sub-path names), Triton publishes its ports on
127.0.0.1 only (``hostPort`` + ``hostIP``) and operators use the host's network to reach it there.
Probes and resource requests are left out (podman runs neither probes without systemd nor GPU requests).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kit.deploy import triton
from kit.deploy.workflow import PAYLOAD, RUN

PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def substitute(text: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def triton_pod(deployment: Mapping[str, Any], name: str, models_dir: Path, ports: Mapping[str, int],
               scratch: Path) -> dict[str, Any]:
    """The Triton Deployment's pod, its models volume a hostPath, each emptyDir a folder under ``scratch``
    (a tmpfs such as /dev/shm for medium Memory), its ports on 127.0.0.1:<ports[name]>."""
    spec = copy.deepcopy(deployment["spec"]["template"]["spec"])
    spec["restartPolicy"] = "Never"
    volumes = []
    for v in spec["volumes"]:
        if "emptyDir" in v:
            volumes.append({"name": v["name"], "hostPath": {"path": str(scratch / v["name"]), "type": "Directory"}})
        else:
            volumes.append({"name": v["name"], "hostPath": {"path": str(models_dir.resolve()), "type": "Directory"}})
    spec["volumes"] = volumes
    for c in spec["containers"]:
        for probe in PROBES:
            c.pop(probe, None)
        c.pop("resources", None)
        for p in c.get("ports") or []:
            p["hostPort"], p["hostIP"] = ports[p["name"]], "127.0.0.1"
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": dict(deployment["spec"]["template"]["metadata"]["labels"])},
            "spec": spec}


def host_folder(sub_path: str, input_dir: Path, output_dir: Path, run: str) -> Path:
    """Where a mount's sub-path of the payload volume lives here: the payload is INPUT_DIR, a run's
    ``<workflow>/<operator>/<output>`` is OUTPUT_DIR/<operator>/<output> (as `make run-pipeline` lays it out)."""
    if sub_path == PAYLOAD:
        return input_dir.resolve()
    prefix = f"{RUN}/"
    if not sub_path.startswith(prefix):
        raise ValueError(f"sub-path {sub_path!r} is not under the run's folder")
    return (output_dir / sub_path[len(prefix):]).resolve()


def local_env(value: str, namespace: str, grpc: str | None, http: str | None, values: Mapping[str, str]) -> str:
    value = substitute(value, values)
    if grpc:
        value = value.replace(triton.grpc_uri(namespace), grpc)
    if http:
        value = value.replace(triton.http_uri(namespace), http)
    return value


def operator_pod(template: Mapping[str, Any], name: str, input_dir: Path, output_dir: Path, run: str,
                 values: Mapping[str, str], namespace: str, grpc: str | None, http: str | None,
                 user: tuple[int, int] | None) -> tuple[dict[str, Any], list[Path]]:
    """One Workflow container template as a Pod; also the output folders it writes."""
    c = copy.deepcopy(dict(template["container"]))
    c["name"] = template["name"]
    c.pop("resources", None)
    volumes, outputs = [], []
    for i, mount in enumerate(c.get("volumeMounts") or []):
        folder = host_folder(mount.pop("subPath"), input_dir, output_dir, run)
        volume = f"mount-{i}"
        volumes.append({"name": volume, "hostPath": {"path": str(folder), "type": "Directory"}})
        mount["name"] = volume
        if not mount.get("readOnly"):
            outputs.append(folder)
    c["env"] = [{"name": e["name"], "value": local_env(e.get("value", ""), namespace, grpc, http, values)}
                for e in c.get("env") or []]
    spec: dict[str, Any] = {"restartPolicy": "Never", "hostNetwork": True, "containers": [c], "volumes": volumes}
    if user is not None:  # outputs owned by the caller, as RUNTIME=container runs with --user
        spec["securityContext"] = {"runAsUser": user[0], "runAsGroup": user[1]}
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec}, outputs
