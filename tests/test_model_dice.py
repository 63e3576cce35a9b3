"""The demo model reaches the liver bar (Dice >= 0.90) on held-out phantoms and on the sample study, run
in-process with onnxruntime along the operator's path (forward -> sliding window -> inverse)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from kit.phantom import LIVER, make_phantom, reorient
from kit.phantom.__main__ import Sample
from kit.train.config import HELDOUT_SEED_BASE, TRAIN_SEED_BASE, TrainConfig
from kit.train.evaluate import dice, load_model, segment

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    return load_model(ROOT / "local" / "models" / "segmentation_liver_v1")


def test_heldout_seeds_are_not_training_seeds() -> None:
    train = set(range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + TrainConfig().phantoms))
    assert HELDOUT_SEED_BASE not in train and HELDOUT_SEED_BASE + 100 not in train
    assert Sample().seed not in train


@pytest.mark.parametrize("seed, orientation", [(HELDOUT_SEED_BASE, "LPS"), (HELDOUT_SEED_BASE + 1, "RAS")])
def test_liver_dice_on_heldout_phantoms(model, seed: int, orientation: str) -> None:
    p = make_phantom(seed, (320, 320, 56), (0.95, 0.95, 3.5))
    ct, affine = reorient(p.ct, p.affine, orientation)
    truth, _ = reorient(p.labels, p.affine, orientation)
    pred = segment(model, ct, affine)
    assert pred.shape == truth.shape
    assert dice(pred == LIVER, truth == LIVER) >= 0.90


def test_liver_dice_on_the_sample_study(model) -> None:
    cfg = Sample()
    img = nib.load(ROOT / cfg.ct)
    truth = np.asarray(nib.load(ROOT / cfg.truth).dataobj)
    pred = segment(model, np.asarray(img.dataobj), img.affine)
    assert dice(pred == LIVER, truth == LIVER) >= 0.90
