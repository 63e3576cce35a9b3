"""A tiny model repository with the demo model's contract (same name, tensors, dims and parameters).

One 3x3x3 convolution (1 -> 3 channels, fixed seeded weights) and a softmax over the channels, with a
dynamic batch dimension: enough to exercise a real Triton end to end when no trained model is at hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NAME = "segmentation_liver_v1"
INPUT = "NV_MODEL_INPUT"
OUTPUT = "NV_MODEL_OUTPUT"
WINDOW = 96
CLASSES = 3

CONFIG = f"""\
name: "{NAME}"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ {{ name: "{INPUT}" data_type: TYPE_FP32 dims: [ 1, {WINDOW}, {WINDOW}, {WINDOW} ] }} ]
output [ {{ name: "{OUTPUT}" data_type: TYPE_FP32 dims: [ {CLASSES}, {WINDOW}, {WINDOW}, {WINDOW} ] }} ]
parameters {{ key: "spacing_mm" value: {{ string_value: "2.5,2.5,2.5" }} }}
parameters {{ key: "hu_window" value: {{ string_value: "-200,300" }} }}
parameters {{ key: "labels" value: {{ string_value: "background,liver,lesion" }} }}
parameters {{ key: "output_activation" value: {{ string_value: "softmax" }} }}
parameters {{ key: "axes" value: {{ string_value: "RAS" }} }}
"""


def tiny_onnx(window: int = WINDOW, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    weight = rng.normal(0.0, 0.5, size=(CLASSES, 1, 3, 3, 3)).astype(np.float32)
    bias = np.array([0.5, 0.0, -0.5], dtype=np.float32)
    graph = helper.make_graph(
        nodes=[
            helper.make_node("Conv", [INPUT, "w", "b"], ["logits"], pads=[1] * 6, kernel_shape=[3, 3, 3]),
            helper.make_node("Softmax", ["logits"], [OUTPUT], axis=1),
        ],
        name="tiny_segmentation",
        inputs=[helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", 1, window, window, window])],
        outputs=[helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", CLASSES, window, window, window])],
        initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by older onnxruntime builds too
    onnx.checker.check_model(model)
    return model


def write_tiny_repository(root: Path | str, name: str = NAME, version: int = 1, config: str = CONFIG) -> Path:
    """Write <root>/<name>/{config.pbtxt, <version>/model.onnx}; returns root."""
    root = Path(root)
    model_dir = root / name
    (model_dir / str(version)).mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(config.replace(f'name: "{NAME}"', f'name: "{name}"'))
    onnx.save(tiny_onnx(), str(model_dir / str(version) / "model.onnx"))
    return root


# A model of three foreground classes, chosen by intensity alone (one 1x1x1 convolution): after the HU window
# -200..300 -> 0..1, x < 0.2 is background, then "organ" up to 0.5, "core" up to 0.8, "rim" above.
MULTI_NAME = "tiny_three_classes"
MULTI_LABELS = ("background", "organ", "core", "rim")
MULTI_CONFIG = f"""\
name: "{MULTI_NAME}"
platform: "onnxruntime_onnx"
max_batch_size: 2
input [ {{ name: "{INPUT}" data_type: TYPE_FP32 dims: [ 1, 32, 32, 32 ] }} ]
output [ {{ name: "{OUTPUT}" data_type: TYPE_FP32 dims: [ {len(MULTI_LABELS)}, 32, 32, 32 ] }} ]
parameters {{ key: "spacing_mm" value: {{ string_value: "2.5,2.5,2.5" }} }}
parameters {{ key: "hu_window" value: {{ string_value: "-200,300" }} }}
parameters {{ key: "labels" value: {{ string_value: "{','.join(MULTI_LABELS)}" }} }}
parameters {{ key: "output_activation" value: {{ string_value: "none" }} }}
"""


def three_class_onnx(window: int = 32) -> onnx.ModelProto:
    weight = np.array([0.0, 10.0, 20.0, 30.0], dtype=np.float32).reshape(4, 1, 1, 1, 1)
    bias = np.array([0.0, -2.0, -7.0, -15.0], dtype=np.float32)
    shape = ["N", len(MULTI_LABELS), window, window, window]
    graph = helper.make_graph(
        nodes=[helper.make_node("Conv", [INPUT, "w", "b"], [OUTPUT], kernel_shape=[1, 1, 1])],
        name="tiny_three_classes",
        inputs=[helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", 1, window, window, window])],
        outputs=[helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, shape)],
        initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_three_class_repository(root: Path | str, nesting: str = "") -> Path:
    """Write <root>/tiny_three_classes/{config.pbtxt, 1/model.onnx}; returns root. ``nesting``: the config's
    label_nesting parameter (none given when empty)."""
    root = Path(root)
    (root / MULTI_NAME / "1").mkdir(parents=True, exist_ok=True)
    extra = f'parameters {{ key: "label_nesting" value: {{ string_value: "{nesting}" }} }}\n' if nesting else ""
    (root / MULTI_NAME / "config.pbtxt").write_text(MULTI_CONFIG + extra)
    onnx.save(three_class_onnx(), str(root / MULTI_NAME / "1" / "model.onnx"))
    return root
