"""Read a Triton model repository: every model directory, its config.pbtxt and its version files.

config.pbtxt is parsed with Triton's own protobuf schema (tritonclient's model_config_pb2), so what the
embedded server serves is exactly what the NGC Triton container would read from the same directory.
A model the embedded CPU server cannot serve is returned as `Unservable` with the reason.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import triton_to_np_dtype

# The operator's reading of config.pbtxt and of the version policy: the one the SEG writer uses too.
from odk import available_versions, parse_config, select_versions

ONNX_PLATFORM = "onnxruntime_onnx"
ONNX_BACKEND = "onnxruntime"
DEFAULT_ONNX_FILENAME = "model.onnx"
# TorchScript, as Triton's PyTorch backend serves it (kit.triton.torch_model runs it).
TORCH_PLATFORM = "pytorch_libtorch"
TORCH_BACKEND = "pytorch"
DEFAULT_TORCH_FILENAME = "model.pt"
# Parameter keys PyTriton's proxy model uses for itself, and the one the embedded server names its engine
# with (kit.triton.onnx_engine): a model may not define them.
RESERVED_PARAMETER_KEYS = frozenset({"workspace-path", "trace-config", "odk_engine"})


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One input or output as config.pbtxt declares it (dims without the batch dimension)."""

    name: str
    triton_dtype: str  # "FP32", "INT64", "BYTES", ...
    dims: tuple[int, ...]

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(triton_to_np_dtype(self.triton_dtype))


@dataclasses.dataclass(frozen=True)
class Batching:
    """config.pbtxt `dynamic_batching` (None on ModelSpec means the model has no dynamic batcher)."""

    max_queue_delay_microseconds: int = 0
    preferred_batch_size: tuple[int, ...] = ()
    preserve_ordering: bool = False


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model the embedded server can serve, with everything it needs to bind it."""

    name: str
    version: int
    platform: str  # ONNX_PLATFORM or TORCH_PLATFORM, whichever way config.pbtxt named it
    model_file: Path
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameters: dict[str, str]
    batching: Batching | None
    instance_count: int


@dataclasses.dataclass(frozen=True)
class Unservable:
    """A model (or one version of it) the embedded server cannot serve, and why."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class Repository:
    root: Path
    models: tuple[ModelSpec, ...]
    unservable: tuple[Unservable, ...]

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]


def triton_dtype(data_type: int) -> str:
    """TYPE_FP32 -> "FP32"; TYPE_STRING -> "BYTES" (the protocol name)."""
    name = mc.DataType.Name(data_type).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def tensor_specs(tensors) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(t.name, triton_dtype(t.data_type), tuple(int(d) for d in t.dims))
                 for t in tensors)


def unsupported_features(config: mc.ModelConfig) -> list[str]:
    """Features of config.pbtxt the embedded server does not implement."""
    found = []
    if config.HasField("sequence_batching"):
        found.append("sequence_batching")
    if config.HasField("ensemble_scheduling"):
        found.append("ensemble_scheduling")
    if any(t.HasField("reshape") for t in [*config.input, *config.output]):
        found.append("reshape")
    if any(t.data_type == mc.TYPE_STRING for t in [*config.input, *config.output]):
        found.append("string tensors")
    reserved = RESERVED_PARAMETER_KEYS.intersection(config.parameters)
    if reserved:
        found.append(f"reserved parameter key(s) {sorted(reserved)}")
    return found


def platform_of(config: mc.ModelConfig) -> str | None:
    """The embedded server's name for the entry's runtime (ONNX_PLATFORM, TORCH_PLATFORM); None: neither.
    A config names its platform or its backend, as Triton accepts either."""
    if config.platform == ONNX_PLATFORM or config.backend == ONNX_BACKEND:
        return ONNX_PLATFORM
    if config.platform == TORCH_PLATFORM or config.backend == TORCH_BACKEND:
        return TORCH_PLATFORM
    return None


def batching_of(config: mc.ModelConfig) -> Batching | None:
    if not config.HasField("dynamic_batching"):
        return None
    db = config.dynamic_batching
    return Batching(
        max_queue_delay_microseconds=int(db.max_queue_delay_microseconds),
        preferred_batch_size=tuple(int(b) for b in db.preferred_batch_size),
        preserve_ordering=bool(db.preserve_ordering),
    )


def read_model(model_dir: Path) -> tuple[list[ModelSpec], list[Unservable]]:
    """Read one model directory; every version that cannot be served comes back as Unservable."""
    dir_name = model_dir.name
    config_path = model_dir / "config.pbtxt"
    if not config_path.is_file():
        return [], [Unservable(dir_name, f"no config.pbtxt in {model_dir}")]
    try:
        config = parse_config(config_path)
    except text_format.ParseError as exc:
        return [], [Unservable(dir_name, f"config.pbtxt does not parse as a Triton ModelConfig: {exc}")]
    if config.name and config.name != dir_name:
        return [], [Unservable(dir_name, f"config.pbtxt name '{config.name}' differs from the directory name")]
    platform = platform_of(config)
    if platform is None:
        kind = config.platform or config.backend or "unspecified"
        return [], [Unservable(dir_name, f"platform/backend '{kind}' cannot run on the embedded CPU server "
                                         f"(it serves {ONNX_PLATFORM} and {TORCH_PLATFORM}); "
                                         "use TRITON_MODE=container")]
    unsupported = unsupported_features(config)
    if unsupported:
        return [], [Unservable(dir_name, "config.pbtxt uses " + ", ".join(unsupported)
                               + ", which the embedded server does not support")]
    if not config.input or not config.output:
        return [], [Unservable(dir_name, "config.pbtxt must declare its inputs and outputs")]
    versions = select_versions(config, available_versions(model_dir))
    if not versions:
        return [], [Unservable(dir_name, "no version directory (e.g. 1/) matching the version_policy")]
    serve, rest = versions[-1], versions[:-1]
    problems = [Unservable(f"{dir_name}/{v}", f"the embedded server serves one version per model "
                                              f"(serving version {serve})") for v in rest]
    default_file = DEFAULT_TORCH_FILENAME if platform == TORCH_PLATFORM else DEFAULT_ONNX_FILENAME
    model_file = model_dir / str(serve) / (config.default_model_filename or default_file)
    if not model_file.is_file():
        problems.append(Unservable(dir_name, f"model file {model_file} is missing"))
        return [], problems
    spec = ModelSpec(
        name=dir_name,
        version=serve,
        platform=platform,
        model_file=model_file,
        max_batch_size=int(config.max_batch_size),
        inputs=tensor_specs(config.input),
        outputs=tensor_specs(config.output),
        parameters={k: v.string_value for k, v in config.parameters.items()},
        batching=batching_of(config),
        instance_count=max(1, sum(g.count or 1 for g in config.instance_group)),
    )
    return [spec], problems


def read_repository(root: Path | str) -> Repository:
    """Every model directory under root (hidden entries and plain files ignored), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"model repository {root} does not exist")
    models: list[ModelSpec] = []
    unservable: list[Unservable] = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        specs, problems = read_model(model_dir)
        models.extend(specs)
        unservable.extend(problems)
    return Repository(root=root, models=tuple(models), unservable=tuple(unservable))
