"""Run one repository model with TorchScript on CPU, the way Triton's PyTorch backend (libtorch) serves it.

The entry is ``platform: "pytorch_libtorch"`` (or ``backend: "pytorch"``) with ``1/model.pt``. TorchScript
carries no tensor names and no shapes, so, as in Triton's backend, the inputs are named ``<name>__<index>``
(``INPUT__0``) or after the forward() arguments, the outputs ``<name>__<index>`` (``OUTPUT__0``), and the
dims come from config.pbtxt. At start the module is run once on zeros of the declared inputs (a batch of 2
when the model batches): what the run shows (count, dtypes, dims, a batch axis that does not follow the
request's) is compared with config.pbtxt, one line per mismatch. Inputs with variable dims (-1) are not probed.

torch is imported only when such a model is served (requirements-torch.txt, installed on demand).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kit.triton.repository import ModelSpec, TensorSpec

INSTALL_HINT = "install it with '.venv/bin/python -m pip install -r requirements-torch.txt' (make triton does)"
# Triton's data type names -> torch dtype names (the ones the PyTorch backend maps).
TRITON_TO_TORCH = {
    "FP32": "float32", "FP16": "float16", "FP64": "float64", "BF16": "bfloat16", "BOOL": "bool",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "UINT8": "uint8",
}
TORCH_TO_TRITON = {v: k for k, v in TRITON_TO_TORCH.items()}
_INDEXED = re.compile(r"^(.+)__(\d+)$")
PROBE_BATCH = 2


class NotTorchScript(ValueError):
    """The file is not a TorchScript archive torch.jit.load reads."""


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def load_module(model_file: Path | str, threads: int = 0):
    """torch.jit.load on CPU in eval mode; NotTorchScript (one line) for anything else."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 points to torch.export
            module = torch.jit.load(str(model_file), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError / ValueError / pickle errors for non-archives
        text = str(exc).strip()
        first = text.splitlines()[0].split(". ")[0] if text else type(exc).__name__
        raise NotTorchScript(f"{model_file} is not a TorchScript file torch.jit.load reads ({first[:120]}); "
                             "save the model with torch.jit.trace(...).save() or torch.jit.script(...).save(), "
                             "not torch.save()") from None
    module.eval()
    return module


def forward_arguments(module) -> list[str]:
    """The names of forward()'s arguments, self excluded."""
    args = module.forward.schema.arguments
    return [a.name for a in args if a.name != "self"]


def _index_of(name: str) -> int | None:
    m = _INDEXED.match(name)
    return int(m.group(2)) if m else None


def input_order(spec: ModelSpec, arguments: list[str]) -> tuple[list[str], list[str]]:
    """(the declared input names in forward()'s argument order, problems). Triton's rule: every input is
    named <name>__<index> (the index is the argument's position), or every input is a forward() argument."""
    names = [t.name for t in spec.inputs]
    problems: list[str] = []
    if len(names) != len(arguments):
        problems.append(f"forward() takes {len(arguments)} tensor(s) ({', '.join(arguments)}) but config.pbtxt"
                        f" declares {len(names)} input(s) ({', '.join(names)})")
        return names, problems
    if set(names) == set(arguments):
        return list(arguments), problems
    indices = [_index_of(n) for n in names]
    if all(i is not None for i in indices) and sorted(indices) == list(range(len(names))):
        return [n for _, n in sorted(zip(indices, names, strict=True))], problems
    problems.append(f"input name(s) {names} are neither all <name>__<index> (INPUT__0, ...) nor forward()'s "
                    f"argument names {arguments}")
    return names, problems


def output_order(spec: ModelSpec) -> tuple[list[str], list[str]]:
    """(the output names by their index, problems): outputs are named <name>__<index> (OUTPUT__0, ...)."""
    names = [t.name for t in spec.outputs]
    indices = [_index_of(n) for n in names]
    if all(i is not None for i in indices) and sorted(indices) == list(range(len(names))):
        return [n for _, n in sorted(zip(indices, names, strict=True))], []
    return names, [f"output name(s) {names} must be <name>__<index> (OUTPUT__0, OUTPUT__1, ...): TorchScript "
                   "outputs have no names, only positions"]


def _as_tensors(result) -> list:
    import torch

    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, (tuple, list)) and all(isinstance(r, torch.Tensor) for r in result):
        return list(result)
    raise TypeError(f"forward() returns {type(result).__name__}, not a tensor or a tuple of tensors")


def probe(module, spec: ModelSpec, batch: int) -> list:
    """Run forward() once on zeros shaped as config.pbtxt declares (``batch`` rows when batched)."""
    import torch

    ordered, _ = input_order(spec, forward_arguments(module))
    by_name = {t.name: t for t in spec.inputs}
    lead = (batch,) if spec.max_batch_size > 0 else ()
    args = [torch.zeros(lead + tuple(by_name[n].dims),
                        dtype=getattr(torch, TRITON_TO_TORCH[by_name[n].triton_dtype])) for n in ordered]
    with torch.inference_mode():
        return _as_tensors(module(*args))


def _check_outputs(spec: ModelSpec, outputs: list, batch: int) -> list[str]:
    names, problems = output_order(spec)
    if problems:
        return problems
    if len(outputs) != len(names):
        return [f"forward() returns {len(outputs)} tensor(s) but config.pbtxt declares {len(names)} output(s)"]
    by_name = {t.name: t for t in spec.outputs}
    batched = spec.max_batch_size > 0
    for name, tensor in zip(names, outputs, strict=True):
        t: TensorSpec = by_name[name]
        where = f"output '{name}'"
        got_type = TORCH_TO_TRITON.get(str(tensor.dtype).removeprefix("torch."), str(tensor.dtype))
        if got_type != t.triton_dtype:
            problems.append(f"{where} is {got_type} from the model but {t.triton_dtype} in config.pbtxt")
        shape = list(tensor.shape)
        if batched:
            if not shape or shape[0] != batch:
                problems.append(f"{where} has shape {shape} for a batch of {batch}: the model's batch axis is "
                                "fixed or missing, but max_batch_size > 0 needs it to follow the request")
                continue
            shape = shape[1:]
        if len(shape) != len(t.dims) or any(w != -1 and g != w for g, w in zip(shape, t.dims, strict=True)):
            problems.append(f"{where} has dims {shape} from the model, config.pbtxt dims {list(t.dims)}")
    return problems


def signature_problems(spec: ModelSpec, module) -> list[str]:
    """What differs between config.pbtxt and the TorchScript module (empty when they agree)."""
    problems: list[str] = []
    for t in spec.inputs:
        if t.triton_dtype not in TRITON_TO_TORCH:
            problems.append(f"input '{t.name}' is {t.triton_dtype}, which the PyTorch backend does not take")
    _, order_problems = input_order(spec, forward_arguments(module))
    problems += order_problems + output_order(spec)[1]
    if problems:
        return problems
    if any(d < 0 for t in spec.inputs for d in t.dims):
        return []  # variable dims: no one shape to probe with (Triton's backend does not check them either)
    batch = min(PROBE_BATCH, spec.max_batch_size) if spec.max_batch_size > 0 else 1
    try:
        outputs = probe(module, spec, batch)
    except Exception as exc:  # the module's own error for a shape/dtype it cannot take
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        dims = {t.name: list(t.dims) for t in spec.inputs}
        return [f"forward() fails on zeros of the declared inputs {dims} (batch {batch}): {first[:200]}"]
    return _check_outputs(spec, outputs, batch)


def make_infer_func(spec: ModelSpec, module) -> Callable:
    """A PyTriton infer callable that runs forward() on the (dynamically) batched request tensors."""
    import torch
    from pytriton.decorators import batch

    ordered, _ = input_order(spec, forward_arguments(module))
    output_names, _ = output_order(spec)

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in ordered]
        with torch.inference_mode():
            results = _as_tensors(module(*args))
        return {n: r.detach().cpu().numpy() for n, r in zip(output_names, results, strict=True)}

    return infer
