"""The demo model as a MONAI bundle in the model zoo's usual shape, made with MONAI's own init_bundle:
configs/metadata.json (network_data_format with the classes' channel_def), configs/inference.json (LoadImaged,
EnsureChannelFirstd, Orientationd, Spacingd, ScaleIntensityRanged; a SlidingWindowInferer; Activationsd,
AsDiscreted, KeepLargestConnectedComponentd, Invertd, SaveImaged; a SupervisedEvaluator) and the TorchScript
network models/model.ts (kit.train.torchscript). Its parameters are the demo model's (config.pbtxt).

    python -m kit.train.bundle OUT_DIR [--model-ts FILE]       (needs torch and monai: requirements-monai.txt)
    python -m monai.bundle run --config_file OUT_DIR/configs/inference.json --bundle_root OUT_DIR \\
        --dataset_dir local/input --output_dir OUT        (also needs fire and pytorch-ignite)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from kit.paths import ROOT
from kit.train.config import LABELS, MODEL_NAME, ROI

DEMO_CONFIG = ROOT / "local" / "models" / MODEL_NAME / "config.pbtxt"


def _demo_parameters() -> dict[str, str]:
    from odk import parse_config

    return {k: v.string_value for k, v in parse_config(DEMO_CONFIG).parameters.items()}


def metadata(labels: tuple[str, ...] = LABELS) -> dict:
    return {
        "name": "liver_ct_segmentation_demo",
        "version": "0.1.0",
        "changelog": {"0.1.0": "the ODK demo model (synthetic phantoms) as a bundle"},
        "monai_version": "1.6.1",
        "pytorch_version": "2.13.0",
        "numpy_version": "1.26.4",
        "task": "Liver and liver lesion segmentation in CT (demo model, synthetic phantoms only)",
        "description": "A small 3D U-Net trained on synthetic phantoms; not a clinical model.",
        "authors": "ODK",
        "copyright": "ODK",
        "network_data_format": {
            "inputs": {"image": {
                "type": "image", "format": "hounsfield", "modality": "CT", "num_channels": 1,
                "spatial_shape": list(ROI), "dtype": "float32", "value_range": [0, 1], "is_patch_data": True,
                "channel_def": {"0": "image"}}},
            "outputs": {"pred": {
                "type": "image", "format": "segmentation", "num_channels": len(labels),
                "spatial_shape": list(ROI), "dtype": "float32", "value_range": [0, 1], "is_patch_data": True,
                "channel_def": {str(i): name for i, name in enumerate(labels)}}},
        },
    }


def inference(spacing: list[float], window: list[float], labels: tuple[str, ...] = LABELS,
              overlap: float = 0.25, sw_batch_size: int = 4) -> dict:
    """The zoo's usual inference.json, with the demo model's steps (those of the operator)."""
    return {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": "/workspace/data",
        "datalist": "$list(sorted(glob.glob(@dataset_dir + '/*.nii.gz')))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": "$torch.jit.load(@bundle_root + '/models/model.ts', map_location=@device)",
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": "image"},
            {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
            {"_target_": "Spacingd", "keys": "image", "pixdim": spacing, "mode": "bilinear"},
            {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": window[0], "a_max": window[1],
             "b_min": 0.0, "b_max": 1.0, "clip": True},
            {"_target_": "EnsureTyped", "keys": "image"},
        ]},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]",
                    "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False,
                       "num_workers": 0},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": list(ROI), "sw_batch_size": sw_batch_size,
                    "overlap": overlap, "mode": "gaussian"},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "KeepLargestConnectedComponentd", "keys": "pred",
             "applied_labels": list(range(1, len(labels))), "independent": False},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
             "nearest_interp": True, "to_tensor": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "seg",
             "output_dtype": "$numpy.uint8", "separate_folder": False, "resample": False},
        ]},
        "handlers": [{"_target_": "StatsHandler", "iteration_log": False}],
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
                      "val_handlers": "@handlers"},
        "initialize": ["$monai.utils.set_determinism(seed=0)"],
        "run": ["$@evaluator.run()"],
    }


def write_bundle(out: Path, model_ts: Path | None = None) -> Path:
    """The demo bundle in ``out`` (which must not exist): MONAI's init_bundle with the configs above, then
    the TorchScript network as models/model.ts (made from the ONNX weights when not given)."""
    from monai.bundle import init_bundle

    params = _demo_parameters()
    spacing = [float(v) for v in params["spacing_mm"].split(",")]
    window = [float(v) for v in params["hu_window"].split(",")]
    labels = tuple(params["labels"].split(","))
    if out.exists():
        raise FileExistsError(f"{out} exists; give a new folder")
    init_bundle(str(out), metadata_str=metadata(labels), inference_str=inference(spacing, window, labels))
    (out / "models").mkdir(exist_ok=True)
    if model_ts is None:
        from kit.train.torchscript import export

        with tempfile.TemporaryDirectory() as tmp:
            export(Path(tmp) / "model.ts")
            shutil.copyfile(Path(tmp) / "model.ts", out / "models" / "model.ts")
    else:
        shutil.copyfile(model_ts, out / "models" / "model.ts")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit.train.bundle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model-ts", type=Path, default=None, help="a TorchScript file (default: made here)")
    args = parser.parse_args(argv)
    write_bundle(args.out, args.model_ts)
    print(f"wrote the MONAI bundle {args.out} (configs/metadata.json, configs/inference.json, models/model.ts)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
