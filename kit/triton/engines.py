"""Which runtime serves a repository model on the embedded server: for ONNX entries onnxruntime or OpenVINO as
config.pbtxt asks (kit.triton.onnx_engine), torch for TorchScript entries (pytorch_libtorch), with one interface
(open, compare with config.pbtxt, infer callable, the engine's name)."""

from __future__ import annotations

from collections.abc import Callable

from kit.triton.repository import TORCH_PLATFORM, ModelSpec


def _onnx():
    from kit.triton import onnx_model  # onnxruntime: imported when a model is opened, not to read a repository

    return onnx_model


def _torch():
    from kit.triton import torch_model  # torch is imported only when a TorchScript model is served

    return torch_model


def missing_runtime(spec: ModelSpec) -> str | None:
    """Why the runtime of ``spec`` cannot be had in this environment (one line), None when it can."""
    if spec.platform == TORCH_PLATFORM:
        from kit.triton.torch_model import INSTALL_HINT, torch_available

        if not torch_available():
            return f"a TorchScript model ({spec.platform}) needs torch, which is not installed; {INSTALL_HINT}"
    return None


def open_runner(spec: ModelSpec, threads: int, engine: str | None = None):
    """What runs ``spec`` when it is served: a TorchScript module, or the ONNX engine its config.pbtxt asks for
    (``engine`` overrides that, e.g. the fallback decided for a first instance)."""
    if spec.platform == TORCH_PLATFORM:
        return _torch().load_module(spec.model_file, threads)
    from kit.triton.onnx_engine import open_runner as open_onnx

    return open_onnx(spec, threads, engine)


def engine_of(spec: ModelSpec, runner) -> str:
    """The name of the engine that runs ``spec`` with ``runner`` (published as the served config's odk_engine)."""
    return "torch" if spec.platform == TORCH_PLATFORM else runner.engine


def open_model(spec: ModelSpec, threads: int):
    """The runtime object whose signature is checked against config.pbtxt: an onnxruntime session (the graph as
    Triton's onnxruntime backend reads it) or a TorchScript module."""
    if spec.platform == TORCH_PLATFORM:
        return _torch().load_module(spec.model_file, threads)
    return _onnx().make_session(spec, threads)


def signature_problems(spec: ModelSpec, runner) -> list[str]:
    if spec.platform == TORCH_PLATFORM:
        return _torch().signature_problems(spec, runner)
    return _onnx().signature_problems(spec, runner)


def make_infer_func(spec: ModelSpec, runner) -> Callable:
    if spec.platform == TORCH_PLATFORM:
        return _torch().make_infer_func(spec, runner)
    return _onnx().make_infer_func(spec, runner)


def runtime_name(spec: ModelSpec) -> str:
    return "TorchScript (torch)" if spec.platform == TORCH_PLATFORM else "onnxruntime"
