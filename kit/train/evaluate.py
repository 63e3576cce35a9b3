"""Held-out Dice of the model in local/models on fresh phantoms (seeds never used in training).

Runs the model in-process with onnxruntime along the operator's own path: stored orientation ->
odk.forward -> odk.sliding_window -> argmax -> inverse_labels onto the input grid,
then compares with the phantom's truth on that grid.

    python -m kit.train.evaluate [--n 10] [--model-dir local/models/segmentation_liver_v1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from kit.local_model import LocalModel, read_local_model
from kit.local_model import segment as local_segment
from kit.phantom import make_phantom, reorient
from kit.summary import dice
from kit.train.config import HELDOUT_SEED_BASE, MODEL_NAME
from kit.train.data import phantom_grid
from kit.triton.onnx_model import open_session
from odk import OperatorConfig

ORIENTATIONS = ("LPS", "RAS", "LAS", "RPI")  # cycled over the cases: the operator must not care


@dataclass(frozen=True)
class OnnxModel:
    session: ort.InferenceSession
    spec: LocalModel

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.spec.output_name], {self.spec.input_name: batch})[0]


def load_model(model_dir: str | Path = Path("local/models") / MODEL_NAME, threads: int = 2) -> OnnxModel:
    """The model as the operator sees it through Triton (kit.local_model: config.pbtxt, version policy, the
    operator's own checks), run in-process by the kit's onnxruntime session."""
    local = read_local_model(model_dir)
    return OnnxModel(open_session(local.model_file, threads), local)


def segment(model: OnnxModel, arr: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Label map (uint8) on the grid and orientation of ``arr``: the operator's own pipeline and defaults."""
    return local_segment(arr, affine, model.spec, model.predict, OperatorConfig())[0]


def overlap(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """(2 |P ∩ T|, |P| + |T|): summed over cases for a pooled Dice."""
    return 2 * int(np.count_nonzero(pred & truth)), int(np.count_nonzero(pred)) + int(np.count_nonzero(truth))


def evaluate(model: OnnxModel, seeds: list[int]) -> dict:
    rows, pooled = [], np.zeros((3, 2))
    for i, seed in enumerate(seeds):
        t0 = time.perf_counter()
        p = make_phantom(seed, *phantom_grid(seed))
        orientation = ORIENTATIONS[i % len(ORIENTATIONS)]
        ct, affine = reorient(p.ct, p.affine, orientation)
        truth, _ = reorient(p.labels, p.affine, orientation)
        pred = segment(model, ct, affine)
        row = {"seed": seed, "shape": list(ct.shape), "spacing": [round(s, 2) for s in p.spacing],
               "orientation": orientation, "lesion_voxels": int(np.count_nonzero(truth == 2))}
        for k, (name, pm, tm) in enumerate((("liver", pred == 1, truth == 1),
                                            ("liver_organ", pred > 0, truth > 0),
                                            ("lesion", pred == 2, truth == 2))):
            pooled[k] += overlap(pm, tm)
            row[name] = round(dice(pm, tm), 4)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(f"  seed {seed} {orientation} {tuple(ct.shape)}: liver {row['liver']:.3f}  "
              f"liver+lesion {row['liver_organ']:.3f}  lesion {row['lesion']:.3f} "
              f"({row['lesion_voxels']} lesion voxels)  {row['seconds']} s", flush=True)
    with_lesions = [r["lesion"] for r in rows if r["lesion_voxels"] > 0]
    return {
        "cases": rows,
        "liver_dice_mean": float(np.mean([r["liver"] for r in rows])),
        "liver_organ_dice_mean": float(np.mean([r["liver_organ"] for r in rows])),
        "lesion_dice_mean": float(np.mean(with_lesions)) if with_lesions else float("nan"),
        "lesion_cases": len(with_lesions),
        "pooled_dice": {name: float(n / d) if d else 1.0
                        for name, (n, d) in zip(("liver", "liver_organ", "lesion"), pooled, strict=True)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kit.train.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10, help="number of held-out phantoms (default 10)")
    ap.add_argument("--seed-base", type=int, default=HELDOUT_SEED_BASE)
    ap.add_argument("--model-dir", default=str(Path("local/models") / MODEL_NAME))
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    model_dir = Path(args.model_dir)
    if not (model_dir / "1" / "model.onnx").is_file():
        print(f"no model at {model_dir}/1/model.onnx; run 'make train' (or set --model-dir)", file=sys.stderr)
        return 1
    model = load_model(model_dir)
    print(f"evaluating {model_dir} on {args.n} held-out phantoms (seeds {args.seed_base}..)", flush=True)
    res = evaluate(model, list(range(args.seed_base, args.seed_base + args.n)))
    pd = res["pooled_dice"]
    print(f"held-out Dice over {args.n} phantoms: liver {res['liver_dice_mean']:.3f} (mean per case; "
          f"pooled {pd['liver']:.3f}; liver+lesion {res['liver_organ_dice_mean']:.3f}), lesion "
          f"{res['lesion_dice_mean']:.3f} (mean over the {res['lesion_cases']} cases with lesions; "
          f"pooled {pd['lesion']:.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
