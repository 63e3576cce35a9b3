"""The demo model as TorchScript, from the weights of its ONNX export (the trained weights live only there).

The ONNX export folded each BatchNorm into the convolution before it (eval mode, constant folding); the
weights go back into kit.train.unet's UNet3D by the module path in each ONNX node's name, every BatchNorm
set to the identity plus the folded bias. The result is traced with torch.jit.trace (batch axis free) and
checked against onnxruntime on a random window.

    python -m kit.train.torchscript OUT.pt [--onnx local/models/segmentation_liver_v1/1/model.onnx] [--logits]

``--logits`` leaves the softmax out (what a MONAI bundle's network usually returns).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from kit.paths import ROOT
from kit.train.config import LABELS, MODEL_NAME, ROI
from kit.train.unet import UNet3D, WithSoftmax
from kit.triton.onnx_model import open_session

DEFAULT_ONNX = ROOT / "local" / "models" / MODEL_NAME / "1" / "model.onnx"
TOLERANCE = 1e-4


def _module_path(node_name: str) -> str:
    """'/net/enc.0/enc.0.3/Conv' -> 'enc.0.3'; '/net/down.0/Conv' -> 'down.0'; '/net/head/Conv' -> 'head'."""
    parts = node_name.strip("/").split("/")
    return parts[-2]


def unet_from_onnx(onnx_file: Path) -> UNet3D:
    graph = onnx.load(str(onnx_file)).graph
    weights = {t.name: numpy_helper.to_array(t).copy() for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]
    first = weights[convs[0].input[1]]
    net = UNet3D(in_channels=first.shape[1], classes=weights[convs[-1].input[1]].shape[0], base=first.shape[0],
                 levels=sum(n.op_type == "ConvTranspose" for n in convs) + 1)
    modules = dict(net.named_modules())
    seen = set()
    with torch.no_grad():
        for node in convs:
            path = _module_path(node.name)
            conv = modules[path]
            w, b = weights[node.input[1]], weights[node.input[2]]
            if tuple(conv.weight.shape) != w.shape:
                raise ValueError(f"{node.name}: ONNX weight {w.shape} does not fit {path} {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(w))
            if conv.bias is not None:
                conv.bias.copy_(torch.from_numpy(b))
            else:  # conv -> BatchNorm in the block: the BN becomes the identity plus the folded bias
                parent, index = path.rsplit(".", 1)
                bn = modules[f"{parent}.{int(index) + 1}"]
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0)
                bn.weight.fill_(math.sqrt(1.0 + bn.eps))
                bn.bias.copy_(torch.from_numpy(b))
            seen.add(path)
    expected = {p for p, m in modules.items() if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))}
    if seen != expected:
        raise ValueError(f"layers without ONNX weights: {sorted(expected - seen)}")
    return net.eval()


def export(out: Path, onnx_file: Path = DEFAULT_ONNX, logits: bool = False) -> float:
    """Write the TorchScript file; returns the largest difference from onnxruntime (softmax outputs)."""
    net = unet_from_onnx(onnx_file)
    model = (net if logits else WithSoftmax(net)).eval()
    x = torch.rand(2, 1, *ROI, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        traced = torch.jit.trace(model, x[:1])
        got = traced(x)
    if logits:
        got = torch.softmax(got, dim=1)
    session = open_session(onnx_file, threads=1)
    name_in, name_out = session.get_inputs()[0].name, session.get_outputs()[0].name
    want = session.run([name_out], {name_in: x.numpy()})[0]
    err = float(np.abs(got.numpy() - want).max())
    if err > TOLERANCE:
        raise RuntimeError(f"TorchScript and onnxruntime disagree by {err:.2e} (> {TOLERANCE:g})")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    traced.save(str(tmp))
    tmp.replace(out)
    return err


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit.train.torchscript", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--onnx", type=Path, default=DEFAULT_ONNX)
    parser.add_argument("--logits", action="store_true", help="leave the softmax out")
    args = parser.parse_args(argv)
    err = export(args.out, args.onnx, args.logits)
    print(f"wrote {args.out} (TorchScript, {len(LABELS)} classes, {'logits' if args.logits else 'softmax'}); "
          f"agrees with onnxruntime to {err:.1e} on a batch of 2 windows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
