"""Export a trained network as a Triton model repository entry: ONNX (softmax inside, dynamic batch),
config.pbtxt written with Triton's own model_config protobuf, and a model card (training.json)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from kit.train.config import LABELS, MODEL_NAME, ROI, TrainConfig
from kit.train.unet import WithSoftmax
from kit.triton.onnx_model import open_session

INPUT, OUTPUT = "NV_MODEL_INPUT", "NV_MODEL_OUTPUT"
OPSET = 17
MAX_BATCH = 4


def csv(values: Sequence[float | str]) -> str:
    """A parameter value as config.pbtxt spells it: comma-separated, numbers without trailing zeros."""
    return ",".join(v if isinstance(v, str) else f"{v:g}" for v in values)


def build_config(name: str, input_dims: Sequence[int], output_dims: Sequence[int], max_batch: int,
                 params: Mapping[str, str]) -> mc.ModelConfig:
    """One FP32 input and one FP32 output (shapes without the batch axis), platform onnxruntime_onnx."""
    c = mc.ModelConfig(name=name, platform="onnxruntime_onnx", max_batch_size=max_batch)
    c.input.add(name=INPUT, data_type=mc.TYPE_FP32, dims=list(input_dims))
    c.output.add(name=OUTPUT, data_type=mc.TYPE_FP32, dims=list(output_dims))
    for key, value in params.items():
        c.parameters[key].string_value = value
    # Run on CPU through OpenVINO: the embedded server compiles it with OpenVINO, the NGC server through
    # onnxruntime's OpenVINO execution provider (docs/triton.md).
    c.optimization.execution_accelerators.cpu_execution_accelerator.add(name="openvino")
    return c


def model_config(cfg: TrainConfig) -> mc.ModelConfig:
    return build_config(MODEL_NAME, [1, *ROI], [len(LABELS), *ROI], MAX_BATCH, {
        "spacing_mm": csv(cfg.spacing_mm),
        "hu_window": csv(cfg.hu_window),
        "labels": ",".join(LABELS),
        "label_nesting": "organ",  # lesions lie inside the liver
        "output_activation": "softmax",
        "axes": "RAS",
    })


def write_config(config: mc.ModelConfig, model_dir: Path) -> Path:
    path = model_dir / "config.pbtxt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text_format.MessageToString(config))
    return path


def export_onnx(model: torch.nn.Module, path: Path, example_shape: Sequence[int]) -> Path:
    """Export ``model`` (what is served, softmax included) with a dynamic batch axis; checks onnxruntime
    against PyTorch on a random batch of 2 of ``example_shape`` (one item, no batch axis)."""
    model = model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.rand(2, *example_shape, generator=torch.Generator().manual_seed(0))
    tmp = path.with_name(path.name + ".tmp")
    torch.onnx.export(model, (x,), str(tmp), dynamo=False, opset_version=OPSET, input_names=[INPUT],
                      output_names=[OUTPUT], dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                      do_constant_folding=True)
    with torch.no_grad():
        want = model(x).numpy()
    sess = open_session(tmp, threads=1)
    got = sess.run([OUTPUT], {INPUT: x.numpy()})[0]
    err = float(np.abs(got - want).max())
    if err > 1e-3:
        raise RuntimeError(f"onnxruntime and PyTorch disagree by {err:.2e} on the exported model")
    tmp.replace(path)
    print(f"exported {path} ({path.stat().st_size / 1e6:.2f} MB, opset {OPSET}); "
          f"onnxruntime matches PyTorch to {err:.1e}", flush=True)
    return path


def export_entry(model: torch.nn.Module, example_shape: Sequence[int], config: mc.ModelConfig,
                 model_dir: Path, card: dict) -> Path:
    """``model_dir``/1/model.onnx, config.pbtxt and training.json."""
    export_onnx(model, model_dir / "1" / "model.onnx", example_shape)
    write_config(config, model_dir)
    (model_dir / "training.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    return model_dir


def export(net: torch.nn.Module, cfg: TrainConfig, card: dict) -> Path:
    """The demo liver model: ``net`` (logits) wrapped with a softmax."""
    return export_entry(WithSoftmax(net), (1, *ROI), model_config(cfg), cfg.model_dir, card)
