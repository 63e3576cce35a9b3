"""Which engine runs an ONNX model on CPU, chosen the way Triton chooses it: by config.pbtxt.

A model whose config.pbtxt asks for the OpenVINO CPU execution accelerator

    optimization { execution_accelerators { cpu_execution_accelerator : [ { name : "openvino" } ] } }

is compiled by OpenVINO (``openvino.Core().compile_model(model.onnx, "CPU", config)``); any other model, or
one OpenVINO cannot compile (then with one warning line naming the model and the reason), is run by
onnxruntime. The NGC server reads the same line and runs the model through onnxruntime's OpenVINO
execution provider. Both runners have onnxruntime's ``run(output_names, feed)`` shape, so the PyTriton infer
callable does not care which one it calls.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from kit.triton.onnx_model import open_session
from kit.triton.repository import ModelSpec
from odk import parse_config

LOG = logging.getLogger("kit.triton")

ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
# The parameters key of the served config that says which engine runs the model (read by `make
# triton-status` and the operator's start line; the NGC server does not set it).
ENGINE_PARAMETER = "odk_engine"


@dataclasses.dataclass(frozen=True)
class OpenVinoOptions:
    """The OpenVINO CPU properties the kit sets (docs/triton.md says why, with measurements).

    LATENCY with one stream: the operator sends one batch at a time and waits for it, so every core works on
    that batch (THROUGHPUT splits the cores into streams that only pay off with concurrent requests).
    f32 inference: OpenVINO's CPU default is bf16 where the CPU has AMX/AVX512-BF16, which changes voxels of
    the label map (and differs from one CPU to the next); f32 gives onnxruntime's labels on every CPU."""

    threads: int
    hint: str = "LATENCY"
    streams: int = 1
    precision: str = "f32"

    def properties(self) -> dict[str, object]:
        return {"PERFORMANCE_HINT": self.hint, "NUM_STREAMS": self.streams, "INFERENCE_NUM_THREADS": self.threads,
                "INFERENCE_PRECISION_HINT": self.precision}


class Runner(Protocol):
    engine: str

    def run(self, output_names: Sequence[str], feed: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


class OrtRunner:
    """onnxruntime's CPU execution provider (kit.triton.onnx_model.open_session)."""

    engine = ONNXRUNTIME

    def __init__(self, model_file: Path, threads: int) -> None:
        self.session = open_session(model_file, threads)

    def run(self, output_names: Sequence[str], feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(list(output_names), dict(feed))


class OpenVinoRunner:
    """One compiled OpenVINO model and its infer request (one per model instance: PyTriton calls each
    instance's callable from one thread at a time)."""

    engine = OPENVINO

    def __init__(self, model_file: Path, options: OpenVinoOptions) -> None:
        import openvino as ov  # ~0.2 s: only a server that serves an OpenVINO model pays for it

        self.compiled = ov.Core().compile_model(str(model_file), "CPU", options.properties())
        self.request = self.compiled.create_infer_request()

    def run(self, output_names: Sequence[str], feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        results = self.request.infer(dict(feed))  # outputs copied out of the request (share_outputs=False)
        return [results[self.compiled.output(name)] for name in output_names]


def requested_engine(config: mc.ModelConfig) -> str:
    """The engine config.pbtxt asks for: openvino when its CPU execution accelerators name it."""
    accelerators = config.optimization.execution_accelerators.cpu_execution_accelerator
    return OPENVINO if any(a.name.lower() == OPENVINO for a in accelerators) else ONNXRUNTIME


def config_path(spec: ModelSpec) -> Path:
    """<model dir>/config.pbtxt of a spec (its model file is <model dir>/<version>/<file>)."""
    return spec.model_file.parent.parent / "config.pbtxt"


def one_line(exc: BaseException) -> str:
    """The informative line of an exception: OpenVINO's messages start with lines of source locations."""
    lines = [ln.strip(" -") for ln in str(exc).splitlines() if ln.strip(" -")]
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(exc).__name__])[-1][:300]


def open_runner(spec: ModelSpec, threads: int, engine: str | None = None) -> Runner:
    """The runner config.pbtxt asks for (``engine`` overrides it); OpenVINO failing to compile the model
    falls back to onnxruntime with one warning line naming the model and the reason."""
    engine = engine or requested_engine(parse_config(config_path(spec)))
    if engine == OPENVINO:
        try:
            return OpenVinoRunner(spec.model_file, OpenVinoOptions(threads=threads))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own per stage
            LOG.warning("model %s: OpenVINO cannot compile %s (%s); serving it with onnxruntime",
                        spec.name, spec.model_file.name, one_line(exc))
    return OrtRunner(spec.model_file, threads)


def served_engine(http_url: str, name: str, timeout: float = 2.0) -> str:
    """Which engine runs ``name`` on the server at ``http_url``, from its served config: the embedded server
    names it (``odk_engine``); another Triton (the NGC server) is described by the accelerators it was asked
    for. Empty when the server does not answer."""
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{http_url}/v2/models/{name}/config", timeout=timeout) as resp:
            config = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return ""
    named = config.get("parameters", {}).get(ENGINE_PARAMETER, {}).get("string_value")
    if named:
        return named
    accelerators = config.get("optimization", {}).get("execution_accelerators", {})
    cpu = [a.get("name", "") for a in accelerators.get("cpu_execution_accelerator", [])]
    backend = config.get("backend") or config.get("platform") or "?"
    return f"{backend} with {', '.join(cpu)} on CPU" if cpu else backend
