"""Write a Triton model entry, MODELS_DIR/<name>/{config.pbtxt, 1/model.*}, from a model's signature and the
operator's parameters. config.pbtxt is written with Triton's model_config protobuf (text_format). The entry is
built and checked in a temporary folder first (the check `make triton` runs: kit.triton.repository reads it,
the embedded server's runtime opens the model and compares it with config.pbtxt); only an entry that passes
is moved into MODELS_DIR, so a refused model leaves nothing there."""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import tempfile
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from kit.modelentry.signature import EntryError, Signature

DEFAULT_MAX_BATCH = 4
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
NESTINGS = ("organ", "none")
ACTIVATIONS = ("softmax", "none")


@dataclasses.dataclass(frozen=True)
class Parameters:
    """The operator's parameters of a model (config.pbtxt `parameters`, read by odk.ModelSpec)."""

    spacing_mm: tuple[float, float, float] | None = None
    hu_window: tuple[float, float] | None = None
    labels: tuple[str, ...] | None = None
    label_nesting: str | None = None
    output_activation: str | None = None  # None: from the model (softmax as its last step or not)
    axes: str = "RAS"

    def as_strings(self, softmax_output: bool) -> dict[str, str]:
        values = {"axes": self.axes,
                  "output_activation": self.output_activation or ("softmax" if softmax_output else "none")}
        if self.spacing_mm is not None:
            values["spacing_mm"] = ",".join(f"{v:g}" for v in self.spacing_mm)
        if self.hu_window is not None:
            values["hu_window"] = ",".join(f"{v:g}" for v in self.hu_window)
        if self.labels is not None:
            values["labels"] = ",".join(self.labels)
        if self.label_nesting is not None:
            values["label_nesting"] = self.label_nesting
        return dict(sorted(values.items()))


def _numbers(text: str, n: int, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != n or not all(math.isfinite(v) for v in values):
        raise EntryError(f"{what}={text!r}: expected {n} comma-separated numbers")
    return values


def parse_parameters(spacing: str = "", window: str = "", labels: str = "", nesting: str = "",
                     activation: str = "") -> Parameters:
    """The command line's parameters (make model-config SPACING_MM=.. HU_WINDOW=.. LABELS=..)."""
    sp = _numbers(spacing, 3, "SPACING_MM") if spacing.strip() else None
    if sp is not None and not all(0 < v <= 100 for v in sp):
        raise EntryError(f"SPACING_MM={spacing!r}: spacings must be above 0 and at most 100 mm")
    hu = _numbers(window, 2, "HU_WINDOW") if window.strip() else None
    if hu is not None and hu[1] <= hu[0]:
        raise EntryError(f"HU_WINDOW={window!r}: expected low,high with low < high")
    names = tuple(s.strip() for s in labels.split(",")) if labels.strip() else None
    if names is not None and (not all(names) or len(set(names)) != len(names)):
        raise EntryError(f"LABELS={labels!r}: expected distinct comma-separated class names, background first")
    nesting = nesting.strip().lower() or None
    if nesting is not None and nesting not in NESTINGS:
        raise EntryError(f"LABEL_NESTING={nesting!r}: expected organ or none")
    activation = activation.strip().lower() or None
    if activation is not None and activation not in ACTIVATIONS:
        raise EntryError(f"OUTPUT_ACTIVATION={activation!r}: expected softmax or none")
    return Parameters(spacing_mm=sp, hu_window=hu, labels=names, label_nesting=nesting,
                      output_activation=activation)


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise EntryError(f"NAME={name!r}: give the model's name (letters, digits, '_', '-', '.'), e.g. NAME=my_model")
    return name


def model_config(name: str, sig: Signature, params: Parameters, max_batch_size: int = DEFAULT_MAX_BATCH,
                 ) -> mc.ModelConfig:
    """config.pbtxt for the signature: dims without the batch axis, which becomes max_batch_size."""
    if max_batch_size < 1:
        raise EntryError(f"MAX_BATCH_SIZE={max_batch_size}: the operator sends batches of windows, give >= 1")
    config = mc.ModelConfig(name=name, platform=sig.platform, max_batch_size=max_batch_size)
    for kind, tensors in (("input", sig.inputs), ("output", sig.outputs)):
        for t in tensors:
            getattr(config, kind).add(name=t.name, data_type=mc.DataType.Value(f"TYPE_{t.triton_dtype}"),
                                      dims=[d if d is not None else -1 for d in t.shape[1:]])
    out = sig.outputs[0].shape
    if params.labels is not None and len(out) > 1 and out[1] is not None and len(params.labels) != out[1]:
        raise EntryError(f"LABELS names {len(params.labels)} classes but output '{sig.outputs[0].name}' has "
                         f"{out[1]} channels {list(out[1:])}: give one name per channel, background first")
    for key, value in params.as_strings(sig.softmax_output).items():
        config.parameters[key].string_value = value
    return config


def config_text(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def check_entry(entry_dir: Path) -> None:
    """The check of `make triton`: the repository reading and the runtime's comparison with config.pbtxt."""
    from kit.triton.repository import read_model
    from kit.triton.server import check_models

    specs, problems = read_model(entry_dir)
    if not problems:
        problems = check_models(tuple(specs), 1)[1]
    if problems:
        raise EntryError("the written entry does not pass the embedded server's check: "
                         + "; ".join(str(p) for p in problems))


def write_entry(models_dir: Path, name: str, model_file: Path, sig: Signature, config: mc.ModelConfig,
                extra_files: dict[str, str] | None = None) -> Path:
    """Build MODELS_DIR/<name> in a temporary folder, check it, then move it in; the target must not exist."""
    target = models_dir / name
    if target.exists():
        raise EntryError(f"{target} already exists; remove it or choose another NAME")
    with tempfile.TemporaryDirectory(prefix="odk-model-entry-") as tmp:
        entry = Path(tmp) / name
        (entry / "1").mkdir(parents=True)
        shutil.copyfile(model_file, entry / "1" / sig.filename)
        (entry / "config.pbtxt").write_text(config_text(config))
        for rel, text in (extra_files or {}).items():
            (entry / rel).write_text(text)
        check_entry(entry)
        models_dir.mkdir(parents=True, exist_ok=True)
        # Copied beside the target under a hidden name (the repository readers skip hidden entries), then
        # renamed: MODELS_DIR never holds a half-written entry under the model's name.
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=models_dir))
        try:
            shutil.copytree(entry, staging, dirs_exist_ok=True)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target
