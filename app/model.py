"""What the operator needs to know about the model, read from Triton's model metadata and config.

The pre/post-processing parameters live with the model, in config.pbtxt `parameters`
(spacing_mm, hu_window, labels, output_activation, axes), and can be overridden from the environment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from .config import OperatorConfig, number_list

Shape3 = tuple[int, int, int]


class ModelMismatch(ValueError):
    """The served model does not fit what the operator was configured for."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    input_name: str
    output_name: str
    roi: Shape3
    channels: int
    max_batch_size: int
    spacing_mm: tuple[float, float, float]
    hu_window: tuple[float, float]
    labels: tuple[str, ...]
    # label_nesting "organ" (default): the first foreground class is an organ that holds the later ones (liver
    # and its lesions): its volume includes theirs, and the clean-up keeps its largest connected piece.
    # "none": separate structures (organs side by side): each volume is its own, and nothing is removed.
    nested: bool = True

    def windows_per_request(self, requested: int = 0) -> int:
        """Windows sent per inference request: ``requested`` (ODK_BATCH_SIZE; 0 = as many as the model takes),
        never more than the model's max_batch_size. The one rule for the operator, the limit and the peer."""
        return min(requested or self.max_batch_size, self.max_batch_size)


def _param(config: model_config_pb2.ModelConfig, key: str) -> str | None:
    if key in config.parameters:
        return config.parameters[key].string_value
    return None


def served_engine(config: model_config_pb2.ModelConfig) -> str:
    """The engine that runs the served model: the kit's embedded Triton names it (parameter odk_engine);
    another Triton runs its backend, with the CPU execution accelerators the config lists."""
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
    """Check Triton's model metadata/config against the operator's expectations and describe the model.

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
        raise ModelMismatch(f"model {name} has max_batch_size {config.max_batch_size}; the operator sends batches of"
                            " windows: set max_batch_size >= 1 in its config.pbtxt")
    in_dims = list(tin.shape)[1:]  # without the batch dimension
    out_dims = list(tout.shape)[1:]
    if len(in_dims) != 4 or in_dims[0] != 1 or any(d <= 0 for d in in_dims):
        raise ModelMismatch(f"model {name} input '{in_name}' has dims {in_dims}; expected [1, D, H, W]"
                            " (one channel-first window of fixed size)")
    roi = (int(in_dims[1]), int(in_dims[2]), int(in_dims[3]))
    if len(out_dims) != 4 or list(out_dims[1:]) != list(roi) or out_dims[0] < 2:
        raise ModelMismatch(f"model {name} output '{out_name}' has dims {out_dims}; expected [C, {roi[0]},"
                            f" {roi[1]}, {roi[2]}] with C >= 2 classes")
    spacing = cfg.spacing_mm or _floats(name, "spacing_mm", _param(config, "spacing_mm"), 3)
    window = cfg.hu_window or _floats(name, "hu_window", _param(config, "hu_window"), 2)
    labels = model_labels(config) or tuple(f"label{i}" for i in range(out_dims[0]))
    if len(labels) != out_dims[0]:
        raise ModelMismatch(f"model {name}: parameter labels lists {len(labels)} names for {out_dims[0]} channels")
    axes = (_param(config, "axes") or "RAS").upper()
    if axes != "RAS":
        raise ModelMismatch(f"model {name}: parameter axes={axes!r}; this operator feeds RAS-canonical windows")
    activation = (_param(config, "output_activation") or "none").lower()
    if activation not in ("softmax", "none"):
        raise ModelMismatch(f"model {name}: output_activation={activation!r}; expected softmax or none")
    nesting = (_param(config, "label_nesting") or "organ").strip().lower()
    if nesting not in ("organ", "none"):
        raise ModelMismatch(f"model {name}: parameter label_nesting={nesting!r}; expected organ (the first class "
                            "holds the others) or none (separate structures)")
    version = cfg.model_version or (metadata.versions[-1] if metadata.versions else "")
    return ModelSpec(name=name, version=str(version), input_name=in_name, output_name=out_name, roi=roi,
                     channels=int(out_dims[0]), max_batch_size=max(1, int(config.max_batch_size)),
                     spacing_mm=(spacing[0], spacing[1], spacing[2]), hu_window=(window[0], window[1]),
                     labels=labels, nested=nesting == "organ")
