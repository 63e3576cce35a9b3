"""What schema checks miss: DNS-1123 names, selector = pod labels, ports in range, mounts naming volumes,
images, and the Workflow's entrypoint, templates, ``depends`` and acyclic DAG. Pure functions on dicts;
each finding is (object, field, message)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from kit.pipeline.graph import find_cycle

DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
PORT_NAME_RE = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DEPENDS_TOKEN_RE = re.compile(r"[A-Za-z0-9_.-]+")
TASK_RESULTS = {"Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned", "AnySucceeded", "AllFailed"}
LABEL_KINDS = {"Namespace", "Service"}  # names that must be DNS-1123 labels, not subdomains

Finding = tuple[str, str, str]  # object ("Kind/name"), field path, message


def object_name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')}/{meta.get('name') or meta.get('generateName') or '?'}"


def name_problem(value: Any, label: bool = True) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    limit, pattern = (63, DNS_LABEL_RE) if label else (253, DNS_SUBDOMAIN_RE)
    if len(value) > limit or not pattern.match(value):
        kind = "label" if label else "subdomain"
        return (f"'{value}' is not a DNS-1123 {kind} (lower-case letters, digits and '-', starting and ending "
                f"with a letter or digit, at most {limit} characters)")
    return None


def _port(value: Any, where: str, obj: str) -> Iterator[Finding]:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        yield obj, where, f"port {value!r} is not an integer 1-65535"


def containers(spec: Mapping[str, Any], base: str, obj: str, volumes: set[str]) -> Iterator[Finding]:
    """Names, images, ports and mounts of a pod spec's containers."""
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            yield from container(c, f"{base}.{key}[{i}]", obj, volumes)


def container(c: Mapping[str, Any], where: str, obj: str, volumes: set[str]) -> Iterator[Finding]:
    if "name" in c and (problem := name_problem(c["name"])):
        yield obj, f"{where}.name", problem
    if not c.get("image"):
        yield obj, f"{where}.image", "no image: every container needs one"
    for j, p in enumerate(c.get("ports") or []):
        yield from _port(p.get("containerPort"), f"{where}.ports[{j}].containerPort", obj)
        if "hostPort" in p:
            yield from _port(p["hostPort"], f"{where}.ports[{j}].hostPort", obj)
        if "name" in p and (not isinstance(p["name"], str) or len(p["name"]) > 15
                            or not PORT_NAME_RE.match(p["name"])):
            yield obj, f"{where}.ports[{j}].name", f"port name {p['name']!r} is not an IANA service name"
    for j, mount in enumerate(c.get("volumeMounts") or []):
        if mount.get("name") not in volumes:
            yield (obj, f"{where}.volumeMounts[{j}].name",
                   f"mounts volume {mount.get('name')!r}, which is not declared (volumes: "
                   f"{', '.join(sorted(volumes)) or 'none'})")


def pod_spec(spec: Mapping[str, Any], base: str, obj: str) -> Iterator[Finding]:
    volumes = {v.get("name") for v in spec.get("volumes") or []}
    for i, v in enumerate(spec.get("volumes") or []):
        if problem := name_problem(v.get("name")):
            yield obj, f"{base}.volumes[{i}].name", problem
    yield from containers(spec, base, obj, volumes)


def workflow(obj: Mapping[str, Any], name: str) -> Iterator[Finding]:
    spec = obj.get("spec") or {}
    templates = {t.get("name"): t for t in spec.get("templates") or []}
    if spec.get("entrypoint") not in templates:
        yield name, "spec.entrypoint", f"entrypoint {spec.get('entrypoint')!r} names no template"
    shared = {v.get("name") for v in spec.get("volumes") or []}
    for i, t in enumerate(spec.get("templates") or []):
        where = f"spec.templates[{i}]"
        if problem := name_problem(t.get("name")):
            yield name, f"{where}.name", problem
        volumes = shared | {v.get("name") for v in t.get("volumes") or []}
        if "container" in t:
            yield from container(t["container"], f"{where}.container", name, volumes)
        if "dag" in t:
            yield from dag(t["dag"].get("tasks") or [], f"{where}.dag", name, set(templates))


def depends_names(expression: str) -> list[str]:
    """Task names in an Argo ``depends`` expression (``a && (b.Succeeded || c)``)."""
    names = []
    for token in DEPENDS_TOKEN_RE.findall(expression):
        task, _, result = token.partition(".")
        if result and result not in TASK_RESULTS:
            task = token
        names.append(task)
    return names


def dag(tasks: Sequence[Mapping[str, Any]], where: str, obj: str, templates: set[str]) -> Iterator[Finding]:
    names = [t.get("name") for t in tasks]
    upstream: dict[str, list[str]] = {}
    for i, t in enumerate(tasks):
        if problem := name_problem(t.get("name")):
            yield obj, f"{where}.tasks[{i}].name", problem
        if t.get("template") not in templates:
            yield obj, f"{where}.tasks[{i}].template", f"names no template: {t.get('template')!r}"
        deps = depends_names(t.get("depends") or "") + list(t.get("dependencies") or [])
        for dep in deps:
            if dep not in names:
                yield obj, f"{where}.tasks[{i}].depends", f"depends on {dep!r}, which is not a task of this DAG"
        upstream[str(t.get("name"))] = [d for d in deps if d in names]
    if cycle := find_cycle(list(upstream), upstream):
        yield obj, f"{where}.tasks", "the DAG has a cycle: " + " -> ".join(cycle)


def lint_object(obj: Mapping[str, Any]) -> Iterator[Finding]:
    name = object_name(obj)
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    if "name" in meta or "generateName" not in meta:
        if problem := name_problem(meta.get("name"), label=kind in LABEL_KINDS):
            yield name, "metadata.name", problem
    else:
        if problem := name_problem(str(meta["generateName"]).rstrip("-") or None):
            yield name, "metadata.generateName", problem
    if kind == "Pod":
        yield from pod_spec(obj.get("spec") or {}, "spec", name)
    elif "template" in (obj.get("spec") or {}):
        spec = obj["spec"]
        labels = (spec["template"].get("metadata") or {}).get("labels") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet") and not selector:
            yield name, "spec.selector.matchLabels", "no selector labels"
        for key, value in selector.items():
            if labels.get(key) != value:
                yield (name, "spec.selector.matchLabels", f"selector {key}={value} does not match the pod "
                       f"template's labels ({', '.join(f'{k}={v}' for k, v in labels.items()) or 'none'})")
        yield from pod_spec(spec["template"].get("spec") or {}, "spec.template.spec", name)
    elif kind == "Service":
        for i, p in enumerate((obj.get("spec") or {}).get("ports") or []):
            yield from _port(p.get("port"), f"spec.ports[{i}].port", name)
            if isinstance(p.get("targetPort"), int):
                yield from _port(p["targetPort"], f"spec.ports[{i}].targetPort", name)
    elif kind == "Workflow":
        yield from workflow(obj, name)


def lint_bundle(objs: Sequence[Mapping[str, Any]]) -> Iterator[Finding]:
    """Cross-object checks: a Service's selector must pick the pods of some object of the bundle."""
    pod_labels = [((o.get("spec") or {}).get("template", {}).get("metadata") or {}).get("labels") or {}
                  for o in objs if "template" in (o.get("spec") or {})]
    pod_labels += [(o.get("metadata") or {}).get("labels") or {} for o in objs if o.get("kind") == "Pod"]
    for o in objs:
        selector = (o.get("spec") or {}).get("selector") if o.get("kind") == "Service" else None
        if selector and not any(all(lab.get(k) == v for k, v in selector.items()) for lab in pod_labels):
            yield (object_name(o), "spec.selector",
                   f"selects {', '.join(f'{k}={v}' for k, v in selector.items())}: no pod of the bundle has "
                   "these labels")
