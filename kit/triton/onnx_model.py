"""Run one repository model with onnxruntime on CPU: session, signature check, PyTriton infer callable."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from kit.triton.repository import ModelSpec, TensorSpec

# onnxruntime's element type names -> Triton's data type names.
ORT_TO_TRITON = {
    "tensor(float)": "FP32",
    "tensor(float16)": "FP16",
    "tensor(double)": "FP64",
    "tensor(bfloat16)": "BF16",
    "tensor(bool)": "BOOL",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
}


def cpu_threads(instances: int = 1) -> int:
    """Intra-op threads per session: all cores the process may use, shared among the instances."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, instances))


def open_session(model_file: Path | str, threads: int) -> ort.InferenceSession:
    """The one onnxruntime session of the kit (embedded Triton, benchmark, evaluation): CPU, ``threads``
    intra-op threads, sequential execution, full graph optimisation."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model_file), sess_options=options, providers=["CPUExecutionProvider"])


def make_session(spec: ModelSpec, threads: int) -> ort.InferenceSession:
    return open_session(spec.model_file, threads)


def _check_tensors(kind: str, declared: tuple[TensorSpec, ...], actual, batched: bool) -> list[str]:
    problems = []
    by_name = {a.name: a for a in actual}
    for t in declared:
        a = by_name.get(t.name)
        if a is None:
            problems.append(f"{kind} '{t.name}' is not in the ONNX graph (graph has {sorted(by_name)})")
            continue
        onnx_type = ORT_TO_TRITON.get(a.type, a.type)
        where = f"{kind} '{t.name}'"
        if onnx_type != t.triton_dtype:
            problems.append(f"{where} is {onnx_type} in the graph but {t.triton_dtype} in config.pbtxt")
        shape = list(a.shape)[1:] if batched else list(a.shape)
        if batched and len(a.shape) == len(t.dims):
            problems.append(f"{where} has no batch dimension in the graph but max_batch_size > 0")
            continue
        if batched and isinstance(a.shape[0], int):  # Triton's onnxruntime backend refuses to load it too
            problems.append(f"{where} has a fixed batch dimension {a.shape[0]} in the graph {a.shape}; with"
                            " max_batch_size > 0 it must be dynamic (export with dynamic_axes={..: {0: 'batch'}})")
            continue
        if len(shape) != len(t.dims):
            problems.append(f"{where} has rank {len(a.shape)} in the graph, config.pbtxt dims {t.dims}")
            continue
        for got, want in zip(shape, t.dims, strict=True):
            if isinstance(got, int) and want != -1 and got != want:
                problems.append(f"{where} has shape {a.shape} in the graph, config.pbtxt dims {t.dims}")
                break
    return problems


def signature_problems(spec: ModelSpec, session: ort.InferenceSession) -> list[str]:
    """What differs between config.pbtxt and the ONNX graph (empty when they agree)."""
    batched = spec.max_batch_size > 0
    problems = _check_tensors("input", spec.inputs, session.get_inputs(), batched)
    problems += _check_tensors("output", spec.outputs, session.get_outputs(), batched)
    declared = {t.name for t in spec.inputs}
    missing = [i.name for i in session.get_inputs() if i.name not in declared]
    if missing:
        problems.append(f"graph input(s) {missing} are not declared in config.pbtxt")
    return problems


def make_infer_func(spec: ModelSpec, session: ort.InferenceSession) -> Callable:
    """A PyTriton infer callable that runs the session on the (dynamically) batched request tensors."""
    from pytriton.decorators import batch  # imported here: it costs ~0.3 s of every kit.triton command

    output_names = [t.name for t in spec.outputs]

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        results = session.run(output_names, inputs)
        return dict(zip(output_names, results, strict=True))

    return infer
