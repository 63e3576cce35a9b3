"""Import a MONAI bundle as a model entry: its TorchScript network (models/model.ts) as 1/model.pt
(pytorch_libtorch), the operator's parameters set from configs/metadata.json and configs/inference.json.

inference.json is resolved and its components instantiated with MONAI's own ConfigParser (references,
expressions and all), then read from the objects: Orientationd axcodes, Spacingd pixdim, ScaleIntensityRanged
a_min/a_max/b_min/b_max/clip, the SlidingWindowInferer's roi_size / sw_batch_size / overlap / mode,
Activationsd, AsDiscreted, KeepLargestConnectedComponentd. metadata.json's network_data_format gives the
channels and the class names (outputs' channel_def). What the operator cannot reproduce (an unknown transform,
another normalisation, a post-processing step it lacks) is named, one line each: the import is refused unless
allowed, and then each one is written down in the entry's IMPORTED.md.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import tempfile
import warnings
from pathlib import Path

from kit.modelentry.entry import Parameters, check_name, model_config, write_entry
from kit.modelentry.signature import EntryError, onnx_signature, torchscript_signature

OPERATOR_OVERLAP = 0.25  # odk.OperatorConfig.overlap
OPERATOR_SIGMA_SCALE = 0.125  # odk.sliding_window: Gaussian sigma = roi / 8
# Steps the operator does itself, whatever their arguments: reading the study, channel first, types, writing.
PASS_THROUGH = {"LoadImaged", "LoadImage", "EnsureChannelFirstd", "AddChanneld", "EnsureTyped", "ToTensord",
                "CastToTyped", "EnsureType", "ToNumpyd", "SaveImaged", "SaveImage", "Invertd", "CopyItemsd",
                "DeleteItemsd"}


@dataclasses.dataclass
class Reading:
    """What the bundle says, where it says it, and what the operator cannot do of it."""

    bundle: Path
    spacing_mm: tuple[float, float, float] | None = None
    hu_window: tuple[float, float] | None = None
    labels: tuple[str, ...] | None = None
    channels_in: int = 1
    channels_out: int | None = None
    roi: tuple[int, ...] | None = None
    sw_batch_size: int = 1
    overlap: float = OPERATOR_OVERLAP
    blend: str = "gaussian"
    label_nesting: str = "none"
    softmax_after: bool = False
    taken: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)  # (what, value, where)
    unsupported: list[str] = dataclasses.field(default_factory=list)
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # operator settings to set in env.list

    def take(self, what: str, value: object, where: str) -> None:
        self.taken.append((what, str(value), where))


def _flatten(transform) -> list:
    from monai.transforms import Compose

    if isinstance(transform, Compose):
        return [t for inner in transform.transforms for t in _flatten(inner)]
    return [transform]


def _load_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EntryError(f"{path} is not readable JSON ({exc}); {what}") from None
    if not isinstance(data, dict):
        raise EntryError(f"{path} is not a JSON object; {what}")
    return data


def _inference_file(bundle: Path) -> Path:
    for name in ("inference.json", "inference.yaml", "inference.yml"):
        if (bundle / "configs" / name).is_file():
            return bundle / "configs" / name
    raise EntryError(f"{bundle} has no configs/inference.json: the bundle says nothing of its pre- and "
                     "post-processing (MONAI's init_bundle writes one to fill in)")


def _parse(bundle: Path, inference: Path, work: Path):
    # MONAI says on import that an optional GPU DICOM decoder is missing: nothing the import needs.
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    parser.read_config(str(inference))
    # Where the bundle's paths point: the bundle itself, and a scratch folder for anything it would write.
    parser["bundle_root"] = str(bundle)
    for key in ("output_dir", "dataset_dir"):
        if key in parser:
            parser[key] = str(work)
    return parser


def _component(parser, key: str, inference: Path, required: bool = True):
    if key not in parser:
        if required:
            raise EntryError(f"{inference.name} has no '{key}': the operator needs the bundle's {key}")
        return None
    try:
        return parser.get_parsed_content(key)
    except Exception as exc:  # MONAI's own errors for a reference or an expression that does not resolve
        last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
        raise EntryError(f"{inference.name} '{key}' does not resolve with MONAI's ConfigParser: {last}") from None


def _read_metadata(meta: dict, r: Reading, where: str) -> str:
    """The input's channels and the output's channels and class names; returns the input key."""
    fmt = meta.get("network_data_format")
    if not isinstance(fmt, dict) or not isinstance(fmt.get("inputs"), dict) or not isinstance(fmt.get("outputs"),
                                                                                                dict):
        raise EntryError(f"{where} has no network_data_format with inputs and outputs")
    inputs, outputs = fmt["inputs"], fmt["outputs"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise EntryError(f"{where}: network_data_format has {len(inputs)} input(s) and {len(outputs)} output(s); "
                         "the operator runs single-input, single-output segmentation models")
    (in_key, inp), (out_key, out) = next(iter(inputs.items())), next(iter(outputs.items()))
    if str(inp.get("dtype", "float32")) != "float32" or str(out.get("dtype", "float32")) != "float32":
        r.unsupported.append(f"{where}: dtypes {inp.get('dtype')} -> {out.get('dtype')}; the operator sends and "
                             "reads float32")
    r.channels_in = int(inp.get("num_channels", 1))
    r.take("input channels", r.channels_in, f"{where} network_data_format.inputs.{in_key}.num_channels")
    if "num_channels" in out:
        r.channels_out = int(out["num_channels"])
        r.take("output channels", r.channels_out, f"{where} network_data_format.outputs.{out_key}.num_channels")
    defs = out.get("channel_def")
    if isinstance(defs, dict) and defs:
        try:
            ordered = sorted((int(k), str(v)) for k, v in defs.items())
        except ValueError:
            ordered = []
        if [k for k, _ in ordered] == list(range(len(ordered))):
            r.labels = tuple(re.sub(r"[^A-Za-z0-9_-]+", "_", v.strip()).strip("_") or f"label{k}"
                             for k, v in ordered)
            r.take("labels", ",".join(r.labels), f"{where} network_data_format.outputs.{out_key}.channel_def")
        else:
            r.unsupported.append(f"{where}: channel_def keys {sorted(defs)} are not 0..N-1")
    return in_key


def _read_preprocessing(transforms: list, r: Reading, where: str) -> None:
    for i, t in enumerate(transforms):
        name = type(t).__name__
        at = f"{where} preprocessing[{i}] {name}"
        if name in PASS_THROUGH:
            continue
        if name == "Orientationd":
            axcodes = str(t.ornt_transform.axcodes)
            if axcodes.upper() == "RAS":
                r.take("axes", "RAS", f"{at}.axcodes")
            else:
                r.unsupported.append(f"{at}: axcodes {axcodes}; the operator feeds RAS-canonical windows")
        elif name == "Spacingd":
            pixdim = [float(v) for v in t.spacing_transform.pixdim]
            mode = str(t.mode[0]) if t.mode else "bilinear"
            if len(pixdim) != 3 or not all(math.isfinite(v) and v > 0 for v in pixdim):
                r.unsupported.append(f"{at}: pixdim {pixdim} is not three spacings in mm")
            else:
                r.spacing_mm = (pixdim[0], pixdim[1], pixdim[2])
                r.take("spacing_mm", ",".join(f"{v:g}" for v in pixdim), f"{at}.pixdim")
            if mode not in ("bilinear", "GridSampleMode.BILINEAR", "1"):
                r.unsupported.append(f"{at}: mode {mode}; the operator resamples the image linearly (bilinear)")
        elif name == "ScaleIntensityRanged":
            s = t.scaler
            if (float(s.b_min), float(s.b_max)) != (0.0, 1.0) or not s.clip:
                r.unsupported.append(f"{at}: a_min/a_max -> b_min {s.b_min}, b_max {s.b_max}, clip {s.clip}; the "
                                     "operator maps its HU window to 0..1, clipped")
            else:
                r.hu_window = (float(s.a_min), float(s.a_max))
                r.take("hu_window", f"{float(s.a_min):g},{float(s.a_max):g}", f"{at}.a_min/a_max (b 0..1, clip)")
        else:
            r.unsupported.append(f"{at}: a pre-processing step the operator does not do (its pre-processing is "
                                 "RAS orientation, resampling to spacing_mm, an HU window to 0..1)")
    if r.spacing_mm is None:
        r.unsupported.append(f"{where} preprocessing: no Spacingd; the operator resamples to a fixed spacing_mm")
    if r.hu_window is None:
        r.unsupported.append(f"{where} preprocessing: no ScaleIntensityRanged; the operator applies an HU window")
    if not any(type(t).__name__ == "Orientationd" for t in transforms):
        r.unsupported.append(f"{where} preprocessing: no Orientationd; the operator feeds RAS-canonical windows")


def _read_inferer(inferer, r: Reading, where: str) -> None:
    name = type(inferer).__name__
    at = f"{where} inferer {name}"
    if name != "SlidingWindowInferer":
        r.unsupported.append(f"{at}: the operator runs fixed windows (a SlidingWindowInferer with roi_size)")
        return
    r.roi = tuple(int(v) for v in inferer.roi_size)
    r.take("dims (roi)", list(r.roi), f"{at}.roi_size")
    r.sw_batch_size = max(1, int(inferer.sw_batch_size))
    r.take("max_batch_size", r.sw_batch_size, f"{at}.sw_batch_size")
    r.overlap = float(inferer.overlap if not isinstance(inferer.overlap, (list, tuple)) else inferer.overlap[0])
    if isinstance(inferer.overlap, (list, tuple)) and len(set(inferer.overlap)) > 1:
        r.unsupported.append(f"{at}: overlap {list(inferer.overlap)} differs by axis; the operator has one")
    r.take("overlap", f"{r.overlap:g}", f"{at}.overlap")
    if not math.isclose(r.overlap, OPERATOR_OVERLAP):
        r.env["ODK_OVERLAP"] = f"{r.overlap:g}"
    mode = str(getattr(inferer.mode, "value", inferer.mode))
    r.blend = mode
    r.take("blend", mode, f"{at}.mode")
    if mode == "constant":
        r.env["ODK_BLEND"] = "constant"
    elif mode != "gaussian":
        r.unsupported.append(f"{at}: mode {mode}; the operator blends gaussian or constant")
    elif not math.isclose(float(inferer.sigma_scale if not isinstance(inferer.sigma_scale, (list, tuple))
                                 else inferer.sigma_scale[0]), OPERATOR_SIGMA_SCALE):
        r.unsupported.append(f"{at}: sigma_scale {inferer.sigma_scale}; the operator's Gaussian has sigma = roi/8")


def _read_postprocessing(transforms: list, r: Reading, where: str) -> None:
    argmax = False
    for i, t in enumerate(transforms):
        name = type(t).__name__
        at = f"{where} postprocessing[{i}] {name}"
        if name in PASS_THROUGH:
            continue
        if name == "Activationsd":
            if any(t.sigmoid) or any(o is not None for o in t.other):
                r.unsupported.append(f"{at}: sigmoid/other activation; the operator takes the argmax over classes")
            elif any(t.softmax):
                r.softmax_after = True
                r.take("softmax", "after blending: does not change the argmax", f"{at}.softmax")
        elif name == "AsDiscreted":
            if any(t.argmax) and not any(x is not None for x in (*t.to_onehot, *t.threshold, *t.rounding)):
                argmax = True
                r.take("argmax", "the operator's label map", f"{at}.argmax")
            else:
                r.unsupported.append(f"{at}: to_onehot/threshold/rounding or no argmax; the operator writes the "
                                     "argmax label map")
        elif name == "KeepLargestConnectedComponentd":
            k = t.converter
            foreground = tuple(range(1, (r.channels_out or 0)))
            applied = tuple(int(v) for v in (k.applied_labels or ()))
            if not k.independent and int(k.num_components or 1) == 1 and applied == foreground:
                r.label_nesting = "organ"
                r.take("label_nesting", "organ (the largest piece of all foreground classes together)",
                       f"{at}(applied_labels={list(applied)}, independent=False)")
            else:
                r.unsupported.append(f"{at}(applied_labels={list(applied)}, independent={k.independent}): the "
                                     "operator keeps the largest piece of all foreground classes together only")
        else:
            r.unsupported.append(f"{at}: a post-processing step the operator does not do")
    if not argmax:
        r.unsupported.append(f"{where} postprocessing: no AsDiscreted(argmax); the operator writes argmax labels")
    if r.label_nesting == "none":
        r.take("label_nesting", "none (no KeepLargestConnectedComponentd: nothing removed)", f"{where} postprocessing")


def read_bundle(bundle: Path) -> Reading:
    """Everything the import takes from the bundle (EntryError when it is not a bundle at all)."""
    if not (bundle / "configs" / "metadata.json").is_file():
        raise EntryError(f"{bundle} has no configs/metadata.json: not a MONAI bundle (python -m monai.bundle "
                         "init_bundle makes the skeleton)")
    meta = _load_json(bundle / "configs" / "metadata.json", "a bundle's metadata.json is JSON")
    inference = _inference_file(bundle)
    r = Reading(bundle=bundle)
    _read_metadata(meta, r, "metadata.json")
    where = inference.name
    with tempfile.TemporaryDirectory(prefix="odk-bundle-") as work, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's deprecation notices about its own defaults
        parser = _parse(bundle, inference, Path(work))
        pre = _flatten(_component(parser, "preprocessing", inference))
        inferer = _component(parser, "inferer", inference)
        post = _component(parser, "postprocessing", inference, required=False)
    _read_preprocessing(pre, r, where)
    _read_inferer(inferer, r, where)
    _read_postprocessing(_flatten(post) if post is not None else [], r, where)
    return r


def _note(r: Reading, name: str, model_file: Path, allowed: bool, how: str) -> str:
    lines = [f"# {name}: imported from a MONAI bundle", "",
             f"Imported by `make import-bundle BUNDLE={r.bundle}` (kit.modelentry.bundle): the network is the "
             f"bundle's `{model_file.relative_to(r.bundle)}` {how}; the operator's parameters in config.pbtxt "
             "come from:", "",
             "| what | value | from |", "|---|---|---|"]
    lines += [f"| {what} | {value} | {where} |" for what, value, where in r.taken]
    if r.env:
        lines += ["", "The operator reads these from its environment, not from config.pbtxt; set them in env.list:",
                  ""] + [f"- `{k}={v}`" for k, v in r.env.items()]
    if r.unsupported:
        lines += ["", "Imported with ALLOW_UNSUPPORTED=1 although the operator does not reproduce:" if allowed
                  else "Not reproduced by the operator:", ""] + [f"- {u}" for u in r.unsupported]
    return "\n".join(lines) + "\n"


def default_name(bundle: Path) -> str:
    try:
        meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    except (OSError, ValueError):
        meta = {}
    raw = str(meta.get("name") or bundle.resolve().name)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw).strip("_.") or "bundle"


ONNX_OPSET = 17
EXPORT_TOLERANCE = 1e-4
FORMATS = ("torchscript", "onnx")


def export_onnx(model_ts: Path, out: Path, dims: tuple[int, ...]) -> float:
    """models/model.ts as ONNX (opset 17, dynamic batch axis, tensors INPUT__0 / OUTPUT__0 as in the TorchScript
    entry); returns the largest difference from TorchScript on a random batch of 2 (EntryError above 1e-4)."""
    import numpy as np
    import torch

    from kit.triton.onnx_model import open_session
    from kit.triton.torch_model import load_module

    module = load_module(model_ts)
    x = torch.rand(2, *dims, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x[:1],), str(out), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["INPUT__0"], output_names=["OUTPUT__0"],
                          dynamic_axes={"INPUT__0": {0: "batch"}, "OUTPUT__0": {0: "batch"}})
        with torch.inference_mode():
            want = module(x).numpy()
    got = open_session(out, threads=1).run(["OUTPUT__0"], {"INPUT__0": x.numpy()})[0]
    err = float(np.abs(got - want).max())
    if err > EXPORT_TOLERANCE:
        raise EntryError(f"the ONNX export of models/model.ts differs from it by {err:.1e} (> {EXPORT_TOLERANCE:g}); "
                         "import it as TorchScript (without FORMAT=onnx)")
    return err


def import_bundle(bundle: Path, models_dir: Path, name: str | None, allow_unsupported: bool = False,
                  fmt: str = "torchscript") -> tuple[Path, list[str]]:
    """Write MODELS_DIR/<name> from the bundle; returns (the entry, warnings). EntryError when refused.
    ``fmt`` onnx: the network exported to ONNX (served by onnxruntime) instead of its TorchScript."""
    if fmt not in FORMATS:
        raise EntryError(f"FORMAT={fmt!r}: expected torchscript (the default) or onnx")
    if not bundle.is_dir():
        raise EntryError(f"BUNDLE={bundle} is not a folder")
    name = check_name(name or default_name(bundle))
    if (models_dir / name).exists():
        raise EntryError(f"{models_dir / name} already exists; remove it or choose another NAME")
    r = read_bundle(bundle)
    if r.unsupported and not allow_unsupported:
        raise EntryError(f"the operator cannot reproduce {len(r.unsupported)} step(s) of the bundle (each named "
                         "above); adapt the bundle, or import anyway with ALLOW_UNSUPPORTED=1 (they are then "
                         "written down in the entry's IMPORTED.md)",
                         details=[f"cannot reproduce: {u}" for u in r.unsupported])
    model_file = bundle / "models" / "model.ts"
    if not model_file.is_file():
        raise EntryError(f"{bundle} has no models/model.ts (the TorchScript network); export it with "
                         "'python -m monai.bundle ckpt_export' or torch.jit.trace(...).save()")
    if r.roi is None:
        raise EntryError("the bundle's inferer gives no roi_size; the operator needs the window size")
    dims = (r.channels_in, *r.roi)
    sig = torchscript_signature(model_file, dims)
    out_channels = sig.outputs[0].shape[1] if len(sig.outputs[0].shape) > 1 else None
    if r.channels_out is not None and out_channels != r.channels_out:
        raise EntryError(f"models/model.ts returns {out_channels} channels but metadata.json says "
                         f"{r.channels_out}")
    params = Parameters(spacing_mm=r.spacing_mm, hu_window=r.hu_window, labels=r.labels,
                        label_nesting=r.label_nesting)
    with tempfile.TemporaryDirectory(prefix="odk-bundle-export-") as tmp:
        served, how = model_file, "(TorchScript) as `1/model.pt`, served as `pytorch_libtorch`"
        if fmt == "onnx":
            served = Path(tmp) / "model.onnx"
            err = export_onnx(model_file, served, dims)
            sig = onnx_signature(served)
            how = (f"exported to ONNX (opset {ONNX_OPSET}, dynamic batch axis; it agrees with the TorchScript to "
                   f"{err:.1e}) as `1/model.onnx`, served as `onnxruntime_onnx`")
        config = model_config(name, sig, params, r.sw_batch_size)
        target = write_entry(models_dir, name, served, sig, config,
                             extra_files={"IMPORTED.md": _note(r, name, model_file, allow_unsupported, how)})
    warnings = [f"cannot reproduce: {u}" for u in r.unsupported]
    warnings += [f"set {k}={v} in env.list: the bundle's {'overlap' if k == 'ODK_OVERLAP' else 'blending'} "
                 "(the operator reads it from its environment)" for k, v in r.env.items()]
    return target, warnings
