"""Validate a rendered bundle before anything is applied; every finding names file, object and field.

Kubernetes objects: the official schemas (kubernetes-validate, --strict: unknown fields are errors; a missing
schema is an error). The Argo Workflow: hera's models (types), plus a round trip that finds fields the models
do not know (hera drops them silently). Then the semantic lint (kit.deploy.lint).
``python -m kit.deploy.check DIR [--kube-version 1.34]``: exit 1 on any finding.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pydantic
import yaml
from hera.workflows import models as argo

from kit.deploy import lint
from kit.deploy.settings import DEFAULT_KUBE_VERSION

ARGO_GROUP = "argoproj.io/"


@dataclass(frozen=True)
class Finding:
    file: str
    obj: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.obj}: {self.field or '(object)'}: {self.message}"


def _path(parts: Sequence[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def schema(obj: Mapping[str, Any], version: str) -> Iterator[tuple[str, str]]:
    """(field, message) from the official Kubernetes schema of ``version``."""
    try:
        kubernetes_validate.validate(dict(obj), version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        yield _path(list(exc.absolute_path)), exc.message
    except kubernetes_validate.SchemaNotFoundError:
        yield "apiVersion", (f"no schema for {obj.get('apiVersion')} {obj.get('kind')} in Kubernetes {version} "
                             "(couldn't find schema: not checkable, so refused)")
    except kubernetes_validate.utils.VersionNotSupportedError:
        yield "apiVersion", f"kubernetes-validate has no schemas for Kubernetes {version}"


def unknown_fields(given: Any, kept: Any, base: list[Any]) -> Iterator[tuple[str, str]]:
    """Fields of ``given`` that a model round trip (``kept``) lost: the model does not know them."""
    if isinstance(given, Mapping) and isinstance(kept, Mapping):
        for key, value in given.items():
            if key not in kept:
                if value is not None:
                    yield _path([*base, key]), f"unknown field '{key}'"
            else:
                yield from unknown_fields(value, kept[key], [*base, key])
    elif isinstance(given, list) and isinstance(kept, list):
        for i, (a, b) in enumerate(zip(given, kept, strict=False)):
            yield from unknown_fields(a, b, [*base, i])


def argo_workflow(obj: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    if obj.get("kind") != "Workflow":
        yield "kind", f"{obj.get('apiVersion')} {obj.get('kind')}: only Workflow is checked (refused)"
        return
    try:
        model = argo.Workflow.model_validate(dict(obj))
    except pydantic.ValidationError as exc:
        for err in exc.errors():
            loc = [p for p in err["loc"] if not (isinstance(p, str) and p[0].isupper() and "[" in p)]
            yield _path(loc), f"{err['msg']} (got {err.get('input')!r})"[:300]
        return
    kept = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    yield from unknown_fields(obj, kept, [])


def check_object(obj: Any, file: str, version: str) -> list[Finding]:
    if not isinstance(obj, Mapping):
        return [Finding(file, "?", "", f"a document must be a mapping, not {type(obj).__name__}")]
    name = lint.object_name(obj)
    api = str(obj.get("apiVersion") or "")
    found = argo_workflow(obj) if api.startswith(ARGO_GROUP) else schema(obj, version)
    out = [Finding(file, name, f, msg) for f, msg in found]
    out += [Finding(file, o, f, msg) for o, f, msg in lint.lint_object(obj)]
    return out


def check_files(files: Sequence[Path], version: str = DEFAULT_KUBE_VERSION) -> list[Finding]:
    findings: list[Finding] = []
    objects: list[tuple[str, Mapping[str, Any]]] = []
    for path in files:
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        except yaml.YAMLError as exc:
            findings.append(Finding(str(path), "?", "", f"not YAML: {str(exc).splitlines()[0]}"))
            continue
        for doc in docs:
            findings += check_object(doc, str(path), version)
            if isinstance(doc, Mapping):
                objects.append((str(path), doc))
    by_name = {lint.object_name(o): f for f, o in objects}
    findings += [Finding(by_name.get(o, "?"), o, f, msg) for o, f, msg in lint.lint_bundle([o for _, o in objects])]
    return findings


def bundle_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.yaml"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kit.deploy.check", description=__doc__.splitlines()[0])
    ap.add_argument("targets", type=Path, nargs="+", help="rendered folders or YAML files")
    ap.add_argument("--kube-version", default=DEFAULT_KUBE_VERSION)
    args = ap.parse_args(argv)
    files = [f for t in args.targets for f in (bundle_files(t) if t.is_dir() else [t])]
    findings = check_files(files, args.kube_version)
    for finding in findings:
        print(finding)
    print(f"{len(files)} file(s): {len(findings)} problem(s) (Kubernetes {args.kube_version})")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
