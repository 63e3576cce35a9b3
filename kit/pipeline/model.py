"""A validated pipeline as plain dataclasses, with ``${{NAME}}`` parameters substituted."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.pipeline import rules
from kit.pipeline.graph import topological_order
from kit.pipeline.validate import validate_file
from kit.pipeline.yamlnodes import load_file


class PipelineError(Exception):
    """The pipeline cannot be used: a one-line message, plus the validator's problems if any."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


@dataclass(frozen=True)
class Input:
    source: str | None  # upstream operator; None = the pipeline's payload
    name: str | None  # upstream output name
    path: str | None  # the path inside the container
    io_type: str = "stream"


@dataclass(frozen=True)
class Output:
    name: str | None
    path: str | None
    io_type: str = "stream"


@dataclass(frozen=True)
class Connection:
    env: str
    port: int


@dataclass(frozen=True)
class Service:
    name: str
    image: str
    http: tuple[Connection, ...] = ()
    tag: str = "latest"
    requests: Mapping[str, float] = field(default_factory=dict)
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operator:
    name: str
    image: str
    tag: str
    command: tuple[str, ...]
    variables: Mapping[str, str]
    inputs: tuple[Input, ...]
    outputs: tuple[Output, ...]
    services: tuple[Service, ...] = ()
    models: tuple[str, ...] = ()
    requests: Mapping[str, float] = field(default_factory=dict)  # cpu, gpu, memory (MB)

    @property
    def upstream(self) -> list[str]:
        return list(dict.fromkeys(i.source for i in self.inputs if i.source))


@dataclass(frozen=True)
class Pipeline:
    path: Path
    name: str
    api_version: str
    operators: tuple[Operator, ...]
    parameters: Mapping[str, str] = field(default_factory=dict)
    pull_secrets: tuple[str, ...] = ()

    def operator(self, name: str) -> Operator:
        return next(op for op in self.operators if op.name == name)

    def upstream(self) -> dict[str, list[str]]:
        """Operator name -> the operators it reads from (canonical names)."""
        canonical = {op.name.lower(): op.name for op in self.operators}
        return {op.name: [canonical[u.lower()] for u in op.upstream] for op in self.operators}

    def order(self) -> list[str]:
        return topological_order([op.name for op in self.operators], self.upstream())


def text(value: Any) -> str:
    """A YAML scalar as the text an environment variable or argument would get."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def substitute(value: Any, params: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return rules.PLACEHOLDER_RE.sub(lambda m: params[m[1]], value)
    if isinstance(value, list):
        return [substitute(v, params) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, params) for k, v in value.items()}
    return value


def params_from(environ: Mapping[str, str]) -> dict[str, str]:
    """The caller's parameter values: ``PARAMS="NAME=VALUE NAME2='a value'"`` (shell words), as ``make
    run-pipeline``/``deploy`` take them. A variable of the parameter's own name is not used: the Makefile
    exports variables of its own (IMAGE, TAG, ...) that a pipeline may well name its parameters after."""
    try:
        words = shlex.split(environ.get("PARAMS", ""))
    except ValueError as exc:
        raise PipelineError(f"PARAMS: {exc}") from None
    bad = [w for w in words if "=" not in w or not w.split("=", 1)[0]]
    if bad:
        raise PipelineError(f"PARAMS: {bad[0]!r} is not NAME=VALUE (e.g. PARAMS=\"DICOM_DESTINATION=PACS@host:104\")")
    return dict(w.split("=", 1) for w in words)


# Variables of the kit that give the pipeline's parameter of their name its value when the pipeline declares
# one and the caller set them (as `make listen` hands its destination to the DICOM pipeline).
KIT_PARAMETERS = ("DICOM_DESTINATION",)


def load_pipeline(path: Path, overrides: Mapping[str, str] | None = None,
                  environ: Mapping[str, str] | None = None) -> Pipeline:
    """Validate ``path`` and build the model; PipelineError listing every error otherwise. A parameter takes
    its value from ``overrides``, else (for KIT_PARAMETERS) from a non-empty variable in ``environ``, else its
    default."""
    if not path.is_file():
        raise PipelineError(f"PIPELINE={path} is not a file; give a pipeline definition such as "
                            "def/one-operator-pipeline.yml")
    errors = tuple(str(p) for p in validate_file(path) if p.severity == "error")
    if errors:
        raise PipelineError(f"{path} has {len(errors)} error(s); fix them (make validate PIPELINE={path})", errors)
    raw = load_file(path).root
    params = {str(k): text(v) for k, v in (raw.get("parameters") or {}).items()}
    unknown = set(overrides or {}) - set(params)
    if unknown:
        raise PipelineError(f"{path}: no parameter named {', '.join(sorted(unknown))} "
                            f"(parameters: {', '.join(params) or 'none'})")
    params.update({k: environ[k] for k in KIT_PARAMETERS if k in params and environ and environ.get(k)})
    params.update(overrides or {})
    raw = substitute(raw, params)
    return Pipeline(path=path, name=raw["name"], api_version=raw["api-version"],
                    operators=tuple(_operator(op) for op in raw["operators"]), parameters=params,
                    pull_secrets=tuple(raw.get("pull-secrets") or ()))


def _operator(op: dict) -> Operator:
    container = op["container"]
    return Operator(
        name=op["name"],
        image=container["image"],
        tag=text(container.get("tag") or "latest"),
        command=tuple(text(a) for a in container.get("command") or ()),
        variables={k: text(v) for k, v in (op.get("variables") or {}).items()},
        inputs=tuple(Input(source=i.get("from"), name=i.get("name") if i.get("from") else None,
                           path=i.get("path"), io_type=i.get("type", "stream")) for i in op.get("input") or ()),
        outputs=tuple(Output(name=o.get("name"), path=o.get("path"), io_type=o.get("type", "stream"))
                      for o in op.get("output") or ()),
        services=tuple(Service(name=s["name"], image=s["container"]["image"],
                               http=tuple(Connection(c["name"], c["port"])
                                          for c in (s.get("connections") or {}).get("http") or ()),
                               tag=text(s["container"].get("tag") or "latest"), requests=dict(s.get("requests") or {}),
                               command=tuple(text(a) for a in s["container"].get("command") or ()))
                       for s in op.get("services") or ()),
        models=tuple(m["name"] for m in op.get("models") or ()),
        requests=dict(op.get("requests") or {}),
    )
