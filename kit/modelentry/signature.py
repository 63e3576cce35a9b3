"""What a model file says about itself: platform, inputs and outputs (names, Triton dtypes, dims with the
batch axis), and whether its last step is a softmax. ONNX graphs carry all of it; TorchScript carries no
shapes, so its input dims are given and its outputs are found by running it on zeros (a batch of 1, then 2:
the batch axis must follow)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kit.triton.repository import (
    DEFAULT_ONNX_FILENAME,
    DEFAULT_TORCH_FILENAME,
    ONNX_PLATFORM,
    TORCH_PLATFORM,
    ModelSpec,
    TensorSpec,
)

ONNX_SUFFIXES = (".onnx",)
TORCH_SUFFIXES = (".pt", ".ts", ".pth", ".torchscript")
OPERATOR_DTYPE = "FP32"
# onnx TensorProto element type names -> Triton's.
ONNX_TO_TRITON = {
    "FLOAT": "FP32", "FLOAT16": "FP16", "DOUBLE": "FP64", "BFLOAT16": "BF16", "BOOL": "BOOL", "INT8": "INT8",
    "INT16": "INT16", "INT32": "INT32", "INT64": "INT64", "UINT8": "UINT8", "UINT16": "UINT16",
    "UINT32": "UINT32", "UINT64": "UINT64",
}


class EntryError(ValueError):
    """A model entry cannot be written; the message (one line) says why and what to change, ``details`` name
    each of several reasons (one line each, said before the message)."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = list(details or [])


@dataclasses.dataclass(frozen=True)
class Tensor:
    name: str
    triton_dtype: str
    shape: tuple[int | None, ...]  # with the batch axis first; None: dynamic


@dataclasses.dataclass(frozen=True)
class Signature:
    platform: str
    filename: str  # the file name in the version folder: model.onnx / model.pt
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    softmax_output: bool  # the model's last step is a softmax over the classes


def _check_batch_axis(tensors: tuple[Tensor, ...], kind: str, hint: str) -> None:
    for t in tensors:
        if not t.shape:
            raise EntryError(f"{kind} '{t.name}' is a scalar; the operator sends batches of windows")
        if t.shape[0] is not None:
            raise EntryError(f"{kind} '{t.name}' has a fixed batch axis ({t.shape[0]}) in {list(t.shape)}: "
                             f"Triton batches on the first axis, which must be dynamic; {hint}")


def _check_dtypes(tensors: tuple[Tensor, ...], kind: str) -> None:
    for t in tensors:
        if t.triton_dtype != OPERATOR_DTYPE:
            raise EntryError(f"{kind} '{t.name}' is {t.triton_dtype}; the operator sends and reads FP32: "
                             "export the model with float32 inputs and outputs")


def parse_dims(text: str, what: str = "INPUT_DIMS") -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise EntryError(f"{what}={text!r}: expected the input's dims without the batch axis, positive whole "
                         "numbers, e.g. 1,96,96,96")
    return dims


# --- ONNX ---------------------------------------------------------------------------------------------------

def _onnx_tensor(value_info) -> Tensor:
    import onnx

    tt = value_info.type.tensor_type
    if not value_info.type.HasField("tensor_type"):
        raise EntryError(f"'{value_info.name}' is not a tensor; Triton serves tensors")
    name = onnx.TensorProto.DataType.Name(tt.elem_type)
    dtype = ONNX_TO_TRITON.get(name)
    if dtype is None:
        raise EntryError(f"tensor '{value_info.name}' is of type {name}, which Triton's onnxruntime backend "
                         "does not serve")
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
    return Tensor(value_info.name, dtype, shape)


def _onnx_output_dims(path: Path, inputs: tuple[Tensor, ...], dims: tuple[int, ...]) -> dict[str, tuple]:
    """Run the graph on zeros of ``dims`` (batch 1) to learn output dims the graph leaves open."""
    import numpy as np

    from kit.triton.onnx_model import open_session

    session = open_session(path, threads=1)
    feed = {inputs[0].name: np.zeros((1, *dims), dtype=np.float32)}
    names = [o.name for o in session.get_outputs()]
    return {n: (None, *r.shape[1:]) for n, r in zip(names, session.run(names, feed), strict=True)}


def onnx_signature(path: Path, input_dims: tuple[int, ...] | None = None) -> Signature:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, OSError
        raise EntryError(f"{path} is not an ONNX model onnx.load reads ({type(exc).__name__}); "
                         "export it with torch.onnx.export or name the file .pt for TorchScript") from None
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = tuple(_onnx_tensor(v) for v in graph.input if v.name not in initializers)
    outputs = tuple(_onnx_tensor(v) for v in graph.output)
    if not inputs or not outputs:
        raise EntryError(f"{path}: the graph has no inputs or no outputs")
    hint = "export with dynamic_axes={'<input>': {0: 'batch'}, '<output>': {0: 'batch'}}"
    _check_batch_axis(inputs, "input", hint)
    _check_batch_axis(outputs, "output", hint)
    _check_dtypes(inputs, "input")
    _check_dtypes(outputs, "output")
    open_dims = [t.name for t in inputs if any(d is None for d in t.shape[1:])]
    if open_dims:
        if input_dims is None or len(inputs) > 1:
            raise EntryError(f"input(s) {open_dims} have dynamic dims besides the batch axis; give "
                             "INPUT_DIMS (e.g. INPUT_DIMS=1,96,96,96: one window) for a single-input model")
        fixed = inputs[0].shape[1:]
        if len(fixed) != len(input_dims) or any(f is not None and f != d for f, d in zip(fixed, input_dims,
                                                                                          strict=True)):
            raise EntryError(f"INPUT_DIMS={','.join(map(str, input_dims))} does not fit input "
                             f"'{inputs[0].name}' {list(inputs[0].shape)}")
        inputs = (dataclasses.replace(inputs[0], shape=(None, *input_dims)),)
    if any(d is None for t in outputs for d in t.shape[1:]):
        found = _onnx_output_dims(path, inputs, tuple(inputs[0].shape[1:]))
        outputs = tuple(dataclasses.replace(t, shape=found[t.name]) for t in outputs)
    producers = {o: n.op_type for n in graph.node for o in n.output}
    softmax = all(producers.get(t.name) == "Softmax" for t in outputs)
    return Signature(ONNX_PLATFORM, DEFAULT_ONNX_FILENAME, inputs, outputs, softmax)


# --- TorchScript ----------------------------------------------------------------------------------------------

def _torch_softmax_output(module) -> bool:
    """The graph's returned value comes straight from aten::softmax."""
    try:
        graph = module.inlined_graph
        ret = graph.return_node().inputsAt(0).node()
    except Exception:  # an unusual graph: make no claim
        return False
    return ret.kind() == "aten::softmax"


def torchscript_signature(path: Path, input_dims: tuple[int, ...] | None) -> Signature:
    from kit.triton.torch_model import TORCH_TO_TRITON, NotTorchScript, forward_arguments, load_module, probe

    try:
        module = load_module(path)
    except NotTorchScript as exc:
        raise EntryError(str(exc)) from None
    arguments = forward_arguments(module)
    if len(arguments) != 1:
        raise EntryError(f"forward() takes {len(arguments)} inputs ({', '.join(arguments)}); TorchScript names "
                         "none of their shapes: model-config writes single-input models, write config.pbtxt "
                         "by hand for this one (inputs INPUT__0, INPUT__1, ... with their dims)")
    if input_dims is None:
        raise EntryError("TorchScript carries no shapes: give the input's dims without the batch axis, e.g. "
                         "INPUT_DIMS=1,96,96,96 (one channel-first window)")
    inputs = (Tensor("INPUT__0", OPERATOR_DTYPE, (None, *input_dims)),)
    names = ("OUTPUT__0",)
    spec = ModelSpec(name="probe", version=1, platform=TORCH_PLATFORM, model_file=path, max_batch_size=2,
                     inputs=(TensorSpec("INPUT__0", OPERATOR_DTYPE, input_dims),), outputs=(), parameters={},
                     batching=None, instance_count=1)
    results = {}
    for batch in (1, 2):
        try:
            results[batch] = probe(module, spec, batch)
        except Exception as exc:  # the module's own error: wrong dims, or a batch it cannot take
            last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
            if batch == 2:
                raise EntryError(f"the model runs on a batch of 1 but not of 2 ({last}): its batch axis is "
                                 "fixed; trace/script it so that the first axis is free") from None
            raise EntryError(f"forward() fails on zeros of shape [1, {', '.join(map(str, input_dims))}] "
                             f"({last}); check INPUT_DIMS") from None
    if len(results[1]) > 1:
        names = tuple(f"OUTPUT__{i}" for i in range(len(results[1])))
    outputs = []
    for name, one, two in zip(names, results[1], results[2], strict=True):
        if one.dim() == 0 or two.shape[0] != 2 or one.shape[0] != 1:
            raise EntryError(f"output {name} has shape {list(two.shape)} for a batch of 2: the model's batch "
                             "axis is fixed; trace/script it so that the first axis is free")
        dtype = TORCH_TO_TRITON.get(str(one.dtype).removeprefix("torch."), str(one.dtype))
        outputs.append(Tensor(name, dtype, (None, *one.shape[1:])))
    _check_dtypes(tuple(outputs), "output")
    return Signature(TORCH_PLATFORM, DEFAULT_TORCH_FILENAME, inputs, tuple(outputs),
                     _torch_softmax_output(module))


def read_signature(path: Path, input_dims: tuple[int, ...] | None = None) -> Signature:
    """The signature of an ONNX (.onnx) or TorchScript (.pt/.ts) file; EntryError (one line) otherwise."""
    if not path.is_file():
        raise EntryError(f"MODEL={path} is not a file")
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return onnx_signature(path, input_dims)
    if suffix in TORCH_SUFFIXES:
        from kit.triton.torch_model import INSTALL_HINT, torch_available

        if not torch_available():
            raise EntryError(f"a TorchScript model needs torch, which is not installed; {INSTALL_HINT}")
        return torchscript_signature(path, input_dims)
    raise EntryError(f"MODEL={path}: expected an ONNX (.onnx) or TorchScript ({', '.join(TORCH_SUFFIXES)}) file")
