"""A model directory of a Triton repository, described the one way the operator describes a served model.

The directory is read as Triton reads it (kit.triton.repository: config.pbtxt with Triton's schema, the
version policy), and described and checked by the operator's own app.model.build_spec from the metadata
Triton would report for it. The benchmark's contenders and the held-out evaluation use this; the operator
itself gets the same description from the running Triton.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from app.config import OperatorConfig
from app.model import ModelSpec, build_spec
from kit.triton.repository import TensorSpec, parse_config, read_model


@dataclass(frozen=True)
class LocalModel:
    spec: ModelSpec  # what the operator would see through Triton
    model_dir: Path
    model_file: Path  # the served version's file (version policy applied)


def _metadata(name: str, version: int, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]):
    """What Triton's model metadata says for a batching model (shapes with the batch dimension, -1)."""
    def tensors(specs: tuple[TensorSpec, ...]) -> list[SimpleNamespace]:
        return [SimpleNamespace(name=t.name, datatype=t.triton_dtype, shape=[-1, *t.dims]) for t in specs]

    return SimpleNamespace(name=name, versions=[str(version)], inputs=tensors(inputs), outputs=tensors(outputs))


def read_local_model(model_dir: Path | str, cfg: OperatorConfig | None = None) -> LocalModel:
    """Describe ``<repository>/<name>``; ValueError (app.model.ModelMismatch included) says what does not fit."""
    model_dir = Path(model_dir)
    served, problems = read_model(model_dir)
    if not served:
        raise ValueError("; ".join(map(str, problems)) or f"no servable model in {model_dir}")
    model = served[0]
    cfg = cfg or OperatorConfig(model_name=model.name)
    metadata = _metadata(model.name, model.version, model.inputs, model.outputs)
    spec = build_spec(metadata, parse_config(model_dir / "config.pbtxt"), cfg)
    return LocalModel(spec=spec, model_dir=model_dir, model_file=model.model_file)
