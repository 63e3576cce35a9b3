"""What an operator needs to know about its model, read from Triton's model metadata and config.

The pre/post-processing parameters live with the model, in config.pbtxt ``parameters`` (for the demo models:
spacing_mm, hu_window, labels, label_nesting, output_activation, axes); ODK_SPACING_MM and ODK_HU_WINDOW
override the two usual ones from the environment. Reading config.pbtxt files (and Triton's version policy)
is here too, so the kit's tooling reads models as the operator does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from .config import OperatorConfig, number_list


class ModelMismatch(ValueError):
    """The served model does not fit what the operator was configured for."""


@dataclass(frozen=True)
class ModelSpec:
    """One model as Triton serves it: its input and output tensors (dims without the batch axis), how many
    items one request may carry, and its config.pbtxt ``parameters`` (the pre/post-processing settings that
    live with the model). Nothing here says what the model computes: the operator reads what it needs.

    >>> spec = session.spec                      # after TritonSession.open(cfg)
    >>> spec.input_dims, spec.output_dims        # e.g. (1, 96, 96, 96), (3, 96, 96, 96)
    >>> spec.floats("hu_window", 2)              # (-200.0, 300.0), or ModelMismatch naming the parameter
    """

    name: str
    version: str
    input_name: str
    output_name: str
    input_dims: tuple[int, ...]
    output_dims: tuple[int, ...]
    max_batch_size: int
    parameters: Mapping[str, str] = field(default_factory=dict)

    def windows_per_request(self, requested: int = 0) -> int:
        """Items (windows, slices, studies) sent per inference request: ``requested`` (ODK_BATCH_SIZE; 0 = as
        many as the model takes), never more than the model's max_batch_size. The one rule for every caller."""
        return min(requested or self.max_batch_size, self.max_batch_size)

    def param(self, key: str, default: str | None = None) -> str | None:
        """The config.pbtxt parameter ``key`` (its string_value), or ``default``."""
        return self.parameters.get(key, default)

    def floats(self, key: str, n: int, override: Sequence[float] | None = None) -> tuple[float, ...]:
        """``n`` comma-separated finite numbers of parameter ``key``; ``override`` (from the environment) wins.
        ModelMismatch when the parameter is missing or malformed."""
        if override is not None:
            return tuple(float(v) for v in override)
        return _floats(self.name, key, self.param(key), n)

    def choice(self, key: str, default: str, allowed: Mapping[str, str]) -> str:
        """Parameter ``key`` (lower case), one of ``allowed`` (value -> what it means); ModelMismatch otherwise."""
        value = (self.param(key) or default).strip().lower()
        if value not in allowed:
            options = [f"{k} ({v})" if v else k for k, v in allowed.items()]
            meaning = options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"
            raise ModelMismatch(f"model {self.name}: parameter {key}={value!r}; expected {meaning}")
        return value

    def labels(self, n: int) -> tuple[str, ...]:
        """The class names of the ``labels`` parameter for ``n`` classes (``label0``.. without one)."""
        raw = self.param("labels")
        labels = tuple(s.strip() for s in raw.split(",")) if raw else tuple(f"label{i}" for i in range(n))
        if len(labels) != n:
            raise ModelMismatch(f"model {self.name}: parameter labels lists {len(labels)} names for {n} channels")
        return labels


@dataclass(frozen=True)
class WindowModel:
    """A dense model fed fixed-size windows: input ``[1, *roi]``, output ``[C, *roi]`` (C class scores per
    voxel or pixel), with its class names. ``roi`` has 3 axes for a 3D model and 2 for a slice-wise one.

    >>> model = WindowModel.of(session.spec, ndim=3)
    >>> model.roi, model.channels, model.labels    # (96, 96, 96), 3, ('background', 'liver', 'lesion')
    """

    spec: ModelSpec
    roi: tuple[int, ...]
    channels: int
    labels: tuple[str, ...]
    # label_nesting "organ" (default): the first foreground class is an organ that holds the later ones (liver
    # and its lesions): its volume includes theirs, and the clean-up keeps its largest connected piece.
    # "none": separate structures (organs side by side): each volume is its own, and nothing is removed.
    nested: bool = True

    @classmethod
    def of(cls, spec: ModelSpec, ndim: int = 3) -> WindowModel:
        """Check that ``spec`` takes one channel-first window of ``ndim`` axes and returns C >= 2 scores for
        each of its voxels; ModelMismatch (one line, what was expected) otherwise."""
        name, in_dims, out_dims = spec.name, list(spec.input_dims), list(spec.output_dims)
        axes = "D, H, W" if ndim == 3 else ", ".join("HW"[:ndim]) if ndim == 2 else f"{ndim} axes"
        if len(in_dims) != ndim + 1 or in_dims[0] != 1 or any(d <= 0 for d in in_dims):
            raise ModelMismatch(f"model {name} input '{spec.input_name}' has dims {in_dims}; expected [1, {axes}]"
                                " (one channel-first window of fixed size)")
        roi = tuple(int(d) for d in in_dims[1:])
        if len(out_dims) != ndim + 1 or tuple(out_dims[1:]) != roi or out_dims[0] < 2:
            raise ModelMismatch(f"model {name} output '{spec.output_name}' has dims {out_dims}; expected"
                                f" [C, {', '.join(map(str, roi))}] with C >= 2 classes")
        axes_param = (spec.param("axes") or "RAS").upper()
        if axes_param != "RAS":
            raise ModelMismatch(f"model {name}: parameter axes={axes_param!r}; this operator feeds RAS-canonical"
                                " windows")
        spec.choice("output_activation", "none", {"softmax": "", "none": ""})
        nesting = spec.choice("label_nesting", "organ", {"organ": "the first class holds the others",
                                                         "none": "separate structures"})
        channels = int(out_dims[0])
        return cls(spec=spec, roi=roi, channels=channels, labels=spec.labels(channels), nested=nesting == "organ")


def _param(config: model_config_pb2.ModelConfig, key: str) -> str | None:
    if key in config.parameters:
        return config.parameters[key].string_value
    return None


def served_engine(config: model_config_pb2.ModelConfig) -> str:
    """The engine that runs the served model: the kit's embedded Triton names it (parameter odk_engine);
    another Triton runs its backend, with the CPU execution accelerators the config lists.

    >>> served_engine(config)                      # 'openvino', or 'onnxruntime_onnx with openvino on CPU'
    """
    named = _param(config, "odk_engine")
    if named:
        return named
    accelerators = [a.name for a in config.optimization.execution_accelerators.cpu_execution_accelerator]
    backend = config.backend or config.platform or "unknown"
    return f"{backend} with {'+'.join(accelerators)} on CPU" if accelerators else backend


def parse_config(path: Path) -> model_config_pb2.ModelConfig:
    """Parse a config.pbtxt with Triton's ModelConfig schema (raises text_format.ParseError, OSError)."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def available_versions(model_dir: Path) -> list[int]:
    """The numbered version directories of a model, ascending."""
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def select_versions(config: model_config_pb2.ModelConfig, versions: list[int]) -> list[int]:
    """Apply the config's version_policy the way Triton does (default: latest 1)."""
    policy = config.version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return versions
    if which == "specific":
        wanted = set(policy.specific.versions)
        return [v for v in versions if v in wanted]
    count = policy.latest.num_versions if which == "latest" and policy.latest.num_versions else 1
    return versions[-count:]


def served_version(config: model_config_pb2.ModelConfig, model_dir: Path) -> int | None:
    """The version Triton serves from ``model_dir`` (the newest its version_policy selects); None: none."""
    versions = select_versions(config, available_versions(model_dir))
    return versions[-1] if versions else None


def model_labels(config: model_config_pb2.ModelConfig) -> tuple[str, ...] | None:
    """The class names of the ``labels`` parameter (index = label value), or None without one."""
    raw = _param(config, "labels")
    return tuple(s.strip() for s in raw.split(",")) if raw else None


def _floats(model: str, key: str, raw: str | None, n: int) -> tuple[float, ...]:
    if raw is None:
        raise ModelMismatch(f"model {model}: config.pbtxt has no parameter '{key}' and no override is set")
    values = number_list(raw)
    if len(values) != n or not all(math.isfinite(v) for v in values):
        raise ModelMismatch(f"model {model}: parameter {key}={raw!r} is not {n} comma-separated finite numbers")
    return values


def _pick(kind: str, wanted: str, available: list[str], model: str) -> str:
    if wanted:
        if wanted not in available:
            raise ModelMismatch(f"model {model} has no {kind} named '{wanted}' (it has: {', '.join(available)});"
                                f" fix TRITON_MODEL_{kind.upper()} in env.list")
        return wanted
    if len(available) != 1:
        raise ModelMismatch(f"model {model} has {len(available)} {kind}s ({', '.join(available)});"
                            f" set TRITON_MODEL_{kind.upper()} in env.list")
    return available[0]


def build_spec(metadata: object, config: model_config_pb2.ModelConfig, cfg: OperatorConfig) -> ModelSpec:
    """Describe the model from Triton's model metadata and config, checking what every operator needs: one
    input and one output (or the ones TRITON_MODEL_INPUT / TRITON_MODEL_OUTPUT name), FP32, fixed dims, a batch
    axis (max_batch_size >= 1). What the dims must be is the operator's to check (e.g. :meth:`WindowModel.of`).

    ``metadata`` is tritonclient's ModelMetadataResponse (name, versions, inputs, outputs with
    name/datatype/shape). Shapes there include the batch dimension (-1): the model must batch.
    """
    name = config.name or cfg.model_name
    inputs = {t.name: t for t in metadata.inputs}
    outputs = {t.name: t for t in metadata.outputs}
    in_name = _pick("input", cfg.model_input, list(inputs), name)
    out_name = _pick("output", cfg.model_output, list(outputs), name)
    tin, tout = inputs[in_name], outputs[out_name]
    for kind, t in (("input", tin), ("output", tout)):
        if t.datatype != "FP32":
            raise ModelMismatch(f"model {name} {kind} '{t.name}' is {t.datatype}; the operator sends/reads FP32")
    if config.max_batch_size < 1:
        raise ModelMismatch(f"model {name} has max_batch_size {config.max_batch_size}; the operator sends batches"
                            " of windows: set max_batch_size >= 1 in its config.pbtxt")
    in_dims = tuple(int(d) for d in list(tin.shape)[1:])  # without the batch dimension
    out_dims = tuple(int(d) for d in list(tout.shape)[1:])
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    for key, n in (("spacing_mm", 3), ("hu_window", 2)):  # overrides from the environment, where given
        override = cfg.spacing_mm if key == "spacing_mm" else cfg.hu_window
        if override is not None:
            parameters[key] = ",".join(f"{v:g}" for v in override[:n])
    version = cfg.model_version or (metadata.versions[-1] if metadata.versions else "")
    return ModelSpec(name=name, version=str(version), input_name=in_name, output_name=out_name,
                     input_dims=in_dims, output_dims=out_dims, max_batch_size=max(1, int(config.max_batch_size)),
                     parameters=parameters)
