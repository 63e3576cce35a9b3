"""Export the trained network as a Triton model repository entry: ONNX (softmax inside, dynamic batch),
config.pbtxt written with Triton's own model_config protobuf, and a model card (training.json)."""

from __future__ import annotations

import json
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


def model_config(cfg: TrainConfig) -> mc.ModelConfig:
    c = mc.ModelConfig(name=MODEL_NAME, platform="onnxruntime_onnx", max_batch_size=MAX_BATCH)
    c.input.add(name=INPUT, data_type=mc.TYPE_FP32, dims=[1, *ROI])
    c.output.add(name=OUTPUT, data_type=mc.TYPE_FP32, dims=[len(LABELS), *ROI])
    params = {
        "spacing_mm": ",".join(f"{s:g}" for s in cfg.spacing_mm),
        "hu_window": ",".join(f"{w:g}" for w in cfg.hu_window),
        "labels": ",".join(LABELS),
        "label_nesting": "organ",  # lesions lie inside the liver
        "output_activation": "softmax",
        "axes": "RAS",
    }
    for key, value in params.items():
        c.parameters[key].string_value = value
    # Run on CPU through OpenVINO: the embedded server compiles it with OpenVINO, the NGC server through
    # onnxruntime's OpenVINO execution provider (docs/triton.md).
    c.optimization.execution_accelerators.cpu_execution_accelerator.add(name="openvino")
    return c


def write_config(cfg: TrainConfig, model_dir: Path) -> Path:
    path = model_dir / "config.pbtxt"
    path.write_text(text_format.MessageToString(model_config(cfg)))
    return path


def export_onnx(net: torch.nn.Module, path: Path) -> Path:
    """Export ``net`` (logits) wrapped with a softmax; checks onnxruntime against PyTorch."""
    model = WithSoftmax(net).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.rand(1, 1, *ROI, generator=torch.Generator().manual_seed(0))
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


def export(net: torch.nn.Module, cfg: TrainConfig, card: dict) -> Path:
    model_dir = cfg.model_dir
    export_onnx(net, model_dir / "1" / "model.onnx")
    write_config(cfg, model_dir)
    (model_dir / "training.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    return model_dir
