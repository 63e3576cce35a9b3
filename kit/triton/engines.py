"""Which runtime serves a repository model on the embedded server: onnxruntime for ONNX entries, torch for
TorchScript entries (pytorch_libtorch), with one interface (open, compare with config.pbtxt, infer callable)."""

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


def open_model(spec: ModelSpec, threads: int):
    """The runtime object that runs ``spec``: an onnxruntime session or a TorchScript module."""
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
