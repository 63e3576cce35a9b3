"""The peer: the same model and the same pre/post steps, written the way a MONAI user would write them.

LoadImaged -> EnsureChannelFirstd -> Orientationd(RAS) -> Spacingd(spacing_mm, bilinear) ->
ScaleIntensityRanged(hu_window -> 0..1, clip) -> sliding_window_inference(roi, overlap, sw_batch_size,
the operator's blending) with an onnxruntime predictor on torch tensors -> AsDiscreted(argmax) ->
KeepLargestConnectedComponentd(every foreground class together, when the model's label_nesting is organ, as
the operator does) -> Invertd(nearest) onto the input grid -> SaveImaged.

torch and MONAI are imported here only (they live in .venv-bench, not in the operator's environment).

    python -m kit.bench.peer --input CT.nii.gz --model-dir local/models/<name> --out-dir DIR --json FILE
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from kit.bench import contender
from kit.bench.model import load_model, ort_session


def run(src: Path, model_dir: Path, out_dir: Path, overlap: float, blend: str, batch_size: int,
        largest_component: bool) -> dict:
    t_import = time.perf_counter()
    import torch
    from monai.inferers import sliding_window_inference
    from monai.transforms import (
        AsDiscreted,
        Compose,
        EnsureChannelFirstd,
        Invertd,
        KeepLargestConnectedComponentd,
        LoadImaged,
        Orientationd,
        SaveImaged,
        ScaleIntensityRanged,
        Spacingd,
    )

    t_import = time.perf_counter() - t_import
    model = load_model(model_dir)
    session = ort_session(model.onnx_file)

    def predictor(x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(session.run([model.output_name], {model.input_name: arr})[0])

    load = LoadImaged(keys="image", image_only=True)
    pre = Compose([
        EnsureChannelFirstd(keys="image"),
        Orientationd(keys="image", axcodes="RAS"),
        Spacingd(keys="image", pixdim=model.spacing_mm, mode="bilinear"),
        ScaleIntensityRanged(keys="image", a_min=model.hu_window[0], a_max=model.hu_window[1], b_min=0.0,
                             b_max=1.0, clip=True),
    ])
    post = [AsDiscreted(keys="pred", argmax=True)]
    if largest_component and model.spec.nested:  # the operator's rule (app/main.py): the organ holds the rest
        foreground = list(range(1, len(model.labels)))
        post.append(KeepLargestConnectedComponentd(keys="pred", applied_labels=foreground, independent=False))
    post.append(Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=True, to_tensor=True))
    post_chain = Compose(post)
    save = SaveImaged(keys="pred", output_dir=str(out_dir), output_postfix="seg", output_ext=".nii.gz",
                      separate_folder=False, output_dtype=np.uint8, resample=False, print_log=False)

    batch = model.spec.windows_per_request(batch_size)
    # Warm the session up (first-run allocations), as the limit does and Triton is for the operator.
    t_warmup = time.perf_counter()
    predictor(torch.zeros((batch, 1, *model.roi)))
    t_warmup = time.perf_counter() - t_warmup
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    data = load({"image": str(src)})
    stages["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = pre(data)
    stages["preprocess"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.inference_mode():
        pred = sliding_window_inference(data["image"][None], roi_size=model.roi, sw_batch_size=batch,
                                        predictor=predictor, overlap=overlap, mode=blend, sigma_scale=0.125)
    stages["inference"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    data["pred"] = pred[0]
    del pred
    data = post_chain(data)
    stages["postprocess"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    save(data)
    stages["write"] = time.perf_counter() - t0
    stages["total"] = sum(stages.values())
    labels = np.asarray(data["pred"].detach().cpu().numpy()).astype(np.uint8).ravel()
    return {"timings_s": {k: round(v, 4) for k, v in stages.items()}, "import_s": round(t_import, 4),
            "warmup_s": round(t_warmup, 4), "batch_size": batch, "torch_threads": torch.get_num_threads(),
            "labels_voxels": [int(c) for c in np.bincount(labels, minlength=len(model.labels))]}


def main(argv: list[str] | None = None) -> int:
    return contender.main("python -m kit.bench.peer", __doc__, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
