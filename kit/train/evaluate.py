"""Held-out accuracy of a demo model in local/models on fresh phantoms (seeds never used in training).

Runs the model in-process with onnxruntime on full-resolution phantoms stored in several orientations:
- liver (segmentation_liver_v1): the operator's own path, odk.forward -> odk.sliding_window
  -> argmax -> inverse_labels onto the input grid; Dice against the phantom's truth on that grid;
- slices (segmentation_liver_2d_v1): the same path slice-wise: in-plane 2.5 mm (slices kept), each axial
  slice tiled with 128x128 windows (odk.sliding_window with a 128x128x1 window), argmax, largest liver component,
  back onto the input grid; Dice;
- classifier (classification_lesion_v1): canonical RAS+ -> 64^3 resize -> HU window -> P(lesion) against the
  threshold in config.pbtxt; accuracy, sensitivity, specificity, AUC. Half the phantoms are lesion-free.

    python -m kit.train.evaluate [--model liver|slices|classifier] [--n N] [--model-dir DIR] [--json FILE]
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
from scipy import stats

import odk
from kit.local_model import LocalModel, read_local_model
from kit.local_model import segment as local_segment
from kit.phantom import LESION, make_phantom, reorient
from kit.summary import dice
from kit.train.config import (
    CLASSIFIER_HELDOUT_SEED_BASE,
    CLASSIFIER_NAME,
    HELDOUT_SEED_BASE,
    MODEL_NAME,
    SLICES_HELDOUT_SEED_BASE,
    SLICES_NAME,
)
from kit.train.data import lesions_for, phantom_grid, prepare_resized, prepare_spacing
from kit.triton.onnx_model import open_session
from kit.triton.repository import read_model
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


def floats(raw: str) -> tuple[float, ...]:
    return tuple(float(v) for v in raw.split(","))


@dataclass(frozen=True)
class RepoModel:
    """A model directory read as the kit's Triton reads it (kit.triton.repository), run with onnxruntime;
    its preprocessing parameters come from config.pbtxt."""

    session: ort.InferenceSession
    params: dict[str, str]
    input_name: str
    output_name: str

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]


def load_repo_model(model_dir: str | Path, threads: int = 2) -> RepoModel:
    served, problems = read_model(Path(model_dir))
    if not served:
        raise ValueError("; ".join(map(str, problems)) or f"no servable model in {model_dir}")
    m = served[0]
    return RepoModel(open_session(m.model_file, threads), dict(m.parameters), m.inputs[0].name, m.outputs[0].name)


def lesion_probability(model: RepoModel, arr: np.ndarray, affine: np.ndarray) -> float:
    """The classifier on one study (any orientation): P(lesion), the output's class 1."""
    shape = tuple(int(v) for v in floats(model.params["resize_shape"]))
    window = floats(model.params["hu_window"])
    x = prepare_resized(arr, affine, shape, (window[0], window[1]))  # type: ignore[arg-type]
    return float(model.run(x[None, None])[0, 1])


def segment_slices(model: RepoModel, arr: np.ndarray, affine: np.ndarray,
                   cfg: OperatorConfig | None = None) -> np.ndarray:
    """The 2D model on one study (any orientation): label map (uint8) on the input's grid."""
    cfg = cfg or OperatorConfig()
    sp, window = floats(model.params["spacing_mm"]), floats(model.params["hu_window"])
    vol, geom = prepare_spacing(arr, affine, (sp[0], sp[1], sp[2]), (window[0], window[1]))
    roi = tuple(int(d) for d in model.session.get_inputs()[0].shape[2:])

    scores = odk.sliding_window(vol, odk.slicewise(model.run), roi=(roi[0], roi[1], 1), overlap=cfg.overlap,
                                batch_size=16, blend=cfg.blend)
    labels = odk.argmax_labels(scores)
    if cfg.largest_component and model.params.get("label_nesting") == "organ":
        labels = odk.keep_largest_component(labels)
    return odk.inverse_labels(labels, geom)


def overlap(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """(2 |P ∩ T|, |P| + |T|): summed over cases for a pooled Dice."""
    return 2 * int(np.count_nonzero(pred & truth)), int(np.count_nonzero(pred)) + int(np.count_nonzero(truth))


def evaluate(model: OnnxModel | RepoModel, seeds: list[int]) -> dict:
    """Dice of a segmentation model (the 3D liver model, or the 2D model when ``model`` is a RepoModel)."""
    run = (lambda ct, affine: segment(model, ct, affine)) if isinstance(model, OnnxModel) else (
        lambda ct, affine: segment_slices(model, ct, affine))
    rows, pooled = [], np.zeros((3, 2))
    for i, seed in enumerate(seeds):
        t0 = time.perf_counter()
        p = make_phantom(seed, *phantom_grid(seed))
        orientation = ORIENTATIONS[i % len(ORIENTATIONS)]
        ct, affine = reorient(p.ct, p.affine, orientation)
        truth, _ = reorient(p.labels, p.affine, orientation)
        pred = run(ct, affine)
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


def auc(scores: list[float], labels: list[int]) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting half
    (the Mann-Whitney U statistic over n_pos * n_neg)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return float("nan")
    return float(stats.mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))


def evaluate_classifier(model: RepoModel, seeds: list[int]) -> dict:
    """Study-level results on full-resolution phantoms (even seeds lesion-free, odd seeds 0-4 lesions)."""
    threshold = float(model.params["threshold"])
    rows = []
    for i, seed in enumerate(seeds):
        t0 = time.perf_counter()
        p = make_phantom(seed, *phantom_grid(seed), lesions=lesions_for(seed))
        orientation = ORIENTATIONS[i % len(ORIENTATIONS)]
        ct, affine = reorient(p.ct, p.affine, orientation)
        prob = lesion_probability(model, ct, affine)
        lesion_voxels = int(np.count_nonzero(p.labels == LESION))
        lesion_ml = lesion_voxels * float(np.prod(p.spacing)) / 1000
        rows.append({"seed": seed, "orientation": orientation, "shape": list(ct.shape), "lesions": p.info["lesions"],
                     "lesion_ml": round(lesion_ml, 2), "truth": int(lesion_voxels > 0), "p_lesion": round(prob, 4),
                     "called": int(prob > threshold), "seconds": round(time.perf_counter() - t0, 1)})
        r = rows[-1]
        print(f"  seed {seed} {orientation} {tuple(ct.shape)}: {r['lesions']} lesion(s) ({r['lesion_ml']} ml)  "
              f"P(lesion) {prob:.3f} -> {'lesion' if r['called'] else 'no lesion'}"
              f"{'' if r['called'] == r['truth'] else '  WRONG'}", flush=True)
    truth = np.array([r["truth"] for r in rows])
    called = np.array([r["called"] for r in rows])
    tp, tn = int(np.sum(called & truth)), int(np.sum((1 - called) & (1 - truth)))
    fp, fn = int(np.sum(called & (1 - truth))), int(np.sum((1 - called) & truth))
    return {"cases": rows, "threshold": threshold, "positives": int(truth.sum()), "negatives": int((1 - truth).sum()),
            "tp": tp, "tn": tn, "fp": fp, "fn": fn,
            "accuracy": (tp + tn) / len(rows),
            "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
            "specificity": tn / (tn + fp) if tn + fp else float("nan"),
            "auc": auc([r["p_lesion"] for r in rows], truth.tolist())}


@dataclass(frozen=True)
class Target:
    name: str  # model directory under local/models
    n: int  # held-out phantoms by default
    seed_base: int


TARGETS = {"liver": Target(MODEL_NAME, 10, HELDOUT_SEED_BASE),
           "slices": Target(SLICES_NAME, 10, SLICES_HELDOUT_SEED_BASE),
           "classifier": Target(CLASSIFIER_NAME, 24, CLASSIFIER_HELDOUT_SEED_BASE)}


def print_dice(res: dict, n: int) -> None:
    pd = res["pooled_dice"]
    print(f"held-out Dice over {n} phantoms: liver {res['liver_dice_mean']:.3f} (mean per case; "
          f"pooled {pd['liver']:.3f}; liver+lesion {res['liver_organ_dice_mean']:.3f}), lesion "
          f"{res['lesion_dice_mean']:.3f} (mean over the {res['lesion_cases']} cases with lesions; "
          f"pooled {pd['lesion']:.3f})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kit.train.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(TARGETS), default="liver",
                    help="liver (3D, default), slices (2D) or classifier")
    ap.add_argument("--n", type=int, help="number of held-out phantoms (default: 10; classifier 24)")
    ap.add_argument("--seed-base", type=int, help="first held-out seed (default: the model's own)")
    ap.add_argument("--model-dir", help="default: local/models/<the model's name>")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    target = TARGETS[args.model]
    n = args.n or target.n
    seed_base = target.seed_base if args.seed_base is None else args.seed_base
    model_dir = Path(args.model_dir or Path("local/models") / target.name)
    if not (model_dir / "1" / "model.onnx").is_file():
        print(f"no model at {model_dir}/1/model.onnx; run 'make train TRAIN_MODEL={args.model}' (or set "
              "--model-dir)", file=sys.stderr)
        return 1
    seeds = list(range(seed_base, seed_base + n))
    print(f"evaluating {model_dir} on {n} held-out phantoms (seeds {seed_base}..)", flush=True)
    if args.model == "classifier":
        res = evaluate_classifier(load_repo_model(model_dir), seeds)
        print(f"held-out over {n} phantoms ({res['positives']} with lesions, {res['negatives']} without), "
              f"threshold {res['threshold']:g}: accuracy {res['accuracy']:.3f}, sensitivity {res['sensitivity']:.3f},"
              f" specificity {res['specificity']:.3f}, AUC {res['auc']:.3f} "
              f"(TP {res['tp']} FN {res['fn']} TN {res['tn']} FP {res['fp']})")
    else:
        res = evaluate(load_model(model_dir) if args.model == "liver" else load_repo_model(model_dir), seeds)
        print_dice(res, n)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
