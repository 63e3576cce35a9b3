"""The embedded server: a real Triton (the tritonserver bundled in nvidia-pytriton) serving every model of a
repository through PyTriton, each one run by onnxruntime on CPU under its own name, version and signature.

Runs in the foreground until SIGTERM/SIGINT; `kit.triton.embedded` starts it in the background.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
from pathlib import Path

from kit.triton.engines import (
    engine_of,
    make_infer_func,
    missing_runtime,
    open_model,
    open_runner,
    runtime_name,
    signature_problems,
)
from kit.triton.onnx_engine import ENGINE_PARAMETER
from kit.triton.onnx_model import cpu_threads
from kit.triton.pytriton_private import publish_parameters
from kit.triton.repository import ModelSpec, Unservable, read_repository
from kit.triton.state import Ports, fix_libpython_path

LOG = logging.getLogger("kit.triton")


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    models_dir: Path
    ports: Ports = dataclasses.field(default_factory=Ports)
    address: str = "127.0.0.1"
    skip_unservable: bool = False
    ort_threads: int = 0  # 0: all cores, shared among a model's instances
    log_verbose: int = 0
    workspace: Path | None = None  # PyTriton's workspace (must not exist); None: a fresh one of PyTriton's


def _carry_parameters(triton, spec: ModelSpec, engine: str) -> None:
    """Publish config.pbtxt `parameters` in the served model config.

    PyTriton's public ModelConfig has no field for model parameters; its generated Triton config carries
    the proxy's own backend parameters, so the model's parameters are added to that same map
    (kit.triton.pytriton_private). Clients then read them with get_model_config(...).config.parameters as
    from the NGC server. The engine that runs the model is published with them (``odk_engine``).
    """
    publish_parameters(triton, spec.name, spec.version, {**spec.parameters, ENGINE_PARAMETER: engine})


def _bind(triton, spec: ModelSpec, threads: int) -> str:
    """Bind the model with the engine its config.pbtxt asks for; returns that engine's name."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    first = open_runner(spec, threads)  # a fallback to onnxruntime is decided (and logged) once
    engine = engine_of(spec, first)
    sessions = [first, *(open_runner(spec, threads, engine) for _ in range(spec.instance_count - 1))]
    batcher = None
    if spec.batching is not None:
        batcher = DynamicBatcher(
            max_queue_delay_microseconds=spec.batching.max_queue_delay_microseconds,
            preferred_batch_size=list(spec.batching.preferred_batch_size) or None,
            preserve_ordering=spec.batching.preserve_ordering,
        )
    triton.bind(
        model_name=spec.name,
        model_version=spec.version,
        infer_func=[make_infer_func(spec, s) for s in sessions],
        inputs=[Tensor(name=t.name, dtype=t.np_dtype, shape=t.dims) for t in spec.inputs],
        outputs=[Tensor(name=t.name, dtype=t.np_dtype, shape=t.dims) for t in spec.outputs],
        config=ModelConfig(
            batching=spec.max_batch_size > 0,
            max_batch_size=max(spec.max_batch_size, 1),
            batcher=batcher,
        ),
        strict=True,
    )
    _carry_parameters(triton, spec, engine)
    return engine


def check_models(models: tuple[ModelSpec, ...], threads: int) -> tuple[list[ModelSpec], list[Unservable]]:
    """Open every model with its runtime (onnxruntime, torch) and compare it with config.pbtxt."""
    ok: list[ModelSpec] = []
    bad: list[Unservable] = []
    for spec in models:
        missing = missing_runtime(spec)
        try:
            problems = [missing] if missing else signature_problems(spec, open_model(spec, 1))
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
            problems = [f"{runtime_name(spec)} cannot load {spec.model_file}: {exc}"]
        if problems:
            bad.append(Unservable(spec.name, "; ".join(problems)))
        else:
            ok.append(spec)
    return ok, bad


def _raise_interrupt(signum, _frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def serve(opts: ServeOptions) -> int:
    """Serve until stopped. Returns the process exit code (2: a model cannot be served)."""
    libdir = fix_libpython_path()
    repo = read_repository(opts.models_dir)
    threads = opts.ort_threads or 0
    models, unservable = check_models(repo.models, 1)
    unservable = [*repo.unservable, *unservable]
    for item in unservable:
        LOG.error("model cannot be served: %s", item)
    if unservable and not opts.skip_unservable:
        LOG.error("%d model(s) cannot be served; fix them, or set TRITON_SKIP_UNSERVABLE=1 to serve the rest",
                  len(unservable))
        return 2
    if not models:
        LOG.error("no servable model in %s", opts.models_dir)
        return 2

    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    config = TritonConfig(
        http_address=opts.address, http_port=opts.ports.http,
        grpc_address=opts.address, grpc_port=opts.ports.grpc,
        metrics_address=opts.address, metrics_port=opts.ports.metrics,
        exit_on_error=True, exit_timeout_secs=5, log_verbose=opts.log_verbose,
    )
    # Shared memory stays open to clients (the operator sends windows through system shm, as to the NGC
    # server); model loading/unloading, statistics, trace and logging stay behind PyTriton's random token.
    restricted = ["model-repository", "statistics", "trace", "logging"]
    security = TritonSecurityConfig(restricted_endpoints=restricted)
    LOG.info("LD_LIBRARY_PATH starts with %s (libpython of %s)", libdir, sys.executable)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    triton = Triton(config=config, security_config=security, workspace=opts.workspace)
    try:
        for spec in models:
            engine = _bind(triton, spec, threads or cpu_threads(spec.instance_count))
            LOG.info("serving %s version %d (%s) with %s on CPU", spec.name, spec.version, spec.model_file, engine)
        triton.serve()
    except KeyboardInterrupt:
        LOG.info("stopping")
    finally:
        triton.stop()
    return 0
