"""How the platform wires a pipeline: entry names, folders and the NVIDIA_CLARA_* environment.

Inputs without ``from`` are the pipeline's payload (entry ``payload`` = INPUT_DIR). An output named
``out`` of operator ``op`` is the entry ``op/out`` and lives in ``OUTPUT_DIR/op/out``; an operator's single
unnamed output is the entry ``op`` in ``OUTPUT_DIR/op``. A downstream input gets the upstream entry's
name and folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kit.pipeline.model import Operator, Output, Pipeline, PipelineError

TRITON_IMAGE_HINTS = ("triton", "tensorrtserver", "trtis")


@dataclass(frozen=True)
class Entry:
    name: str  # the payload entry name the operator sees
    host: Path  # the folder on this machine
    path: str | None  # the path the operator declared (inside its container)


@dataclass(frozen=True)
class Plan:
    operator: Operator
    inputs: tuple[Entry, ...]
    outputs: tuple[Entry, ...]


@dataclass(frozen=True)
class Triton:
    grpc: str | None  # host:port
    http: str | None  # host:port (no scheme, as the platform sets it)
    models: tuple[str, ...] = ()


def output_entry(op: Operator, out: Output, output_root: Path) -> Entry:
    name = f"{op.name}/{out.name}" if out.name else op.name
    host = output_root / op.name / out.name if out.name else output_root / op.name
    return Entry(name=name, host=host, path=out.path)


def plan(pipeline: Pipeline, op: Operator, input_dir: Path, output_root: Path) -> Plan:
    """The entries of one operator, with absolute host folders."""
    by_name = {o.name.lower(): o for o in pipeline.operators}
    inputs: list[Entry] = []
    for i in op.inputs:
        if i.path is None:
            raise PipelineError(f"operator '{op.name}': {i.io_type} inputs without a path are passed in "
                                "memory by the platform and cannot be run locally")
        if i.source is None:
            inputs.append(Entry(name="payload", host=input_dir.resolve(), path=i.path))
            continue
        source = by_name[i.source.lower()]
        out = next(o for o in source.outputs if i.name is None or o.name == i.name)
        upstream = output_entry(source, out, output_root.resolve())
        inputs.append(Entry(name=upstream.name, host=upstream.host, path=i.path))
    outputs: list[Entry] = []
    for o in op.outputs:
        if o.path is None:
            raise PipelineError(f"operator '{op.name}': {o.io_type} outputs without a path are passed in "
                                "memory by the platform and cannot be run locally")
        outputs.append(output_entry(op, o, output_root.resolve()))
    names = [e.name for e in inputs]
    if len(set(names)) != len(names):
        raise PipelineError(f"operator '{op.name}' reads the same entry twice ({', '.join(names)}); "
                            "the driver needs distinct input names")
    return Plan(operator=op, inputs=tuple(inputs), outputs=tuple(outputs))


def entries_text(entries: tuple[Entry, ...], host: bool) -> str:
    """``name:path;name:path`` with host folders or the operator's declared paths."""
    return ";".join(f"{e.name}:{e.host if host else e.path}" for e in entries)


def operator_env(p: Plan, host: bool, job_id: str, job_name: str, triton: Triton) -> dict[str, str]:
    """The environment the platform gives the operator: variables, payload, Triton, services."""
    env = dict(p.operator.variables)
    env.update(triton_env(p.operator, triton))
    env.update({
        "NVIDIA_CLARA_INPUTPATHS": entries_text(p.inputs, host),
        "NVIDIA_CLARA_OUTPUTPATHS": entries_text(p.outputs, host),
        "NVIDIA_CLARA_NOSYNCLOCK": "TRUE",
        "NVIDIA_CLARA_JOBID": job_id,
        "NVIDIA_CLARA_JOBNAME": job_name,
        "NVIDIA_CLARA_STAGENAME": p.operator.name,
    })
    return env


def triton_env(op: Operator, triton: Triton) -> dict[str, str]:
    """NVIDIA_TRITON_* of the local Triton, and each Triton service's connection variable pointed at it."""
    env: dict[str, str] = {}
    if triton.grpc:
        env["NVIDIA_TRITON_GRPCURI"] = triton.grpc
    if triton.http:
        env["NVIDIA_TRITON_HTTPURI"] = triton.http
    for service in op.services:
        if not is_triton(service.image, service.name):
            raise PipelineError(f"operator '{op.name}': service '{service.name}' ({service.image}) is not "
                                "run locally; only Triton services are (mapped to the Triton of `make triton`)")
        for conn in service.http:
            address = triton.grpc if conn.port == 8001 else triton.http
            if address:
                env[conn.env] = address
    return env


def is_triton(image: str, name: str) -> bool:
    text = f"{image} {name}".lower()
    return any(hint in text for hint in TRITON_IMAGE_HINTS)


def missing_models(pipeline: Pipeline, triton: Triton) -> list[str]:
    """Models named by operators that the running Triton does not serve."""
    return [m for op in pipeline.operators for m in op.models if triton.models and m not in triton.models]


