"""The phantom generator: deterministic per seed, plausible anatomy, and NIfTI files whose labels and CT
stay aligned in world coordinates whichever way the arrays are stored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from kit.phantom import LESION, LIVER, make_phantom, write
from kit.phantom.__main__ import Sample
from kit.phantom.render import random_grid

ROOT = Path(__file__).resolve().parents[1]
SHAPE, SPACING = (160, 144, 40), (1.9, 2.1, 4.0)  # small, anisotropic, non-square: axis mix-ups show
ORIENTATIONS = ["RAS", "LPS", "LAS", "RPI", "PIR", "SAR", "ILP", "ASL"]


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(7, SHAPE, SPACING)


def test_same_seed_same_phantom_other_seed_other_phantom(phantom) -> None:
    again = make_phantom(7, SHAPE, SPACING)
    assert np.array_equal(again.ct, phantom.ct) and np.array_equal(again.labels, phantom.labels)
    assert np.array_equal(again.affine, phantom.affine)
    other = make_phantom(8, SHAPE, SPACING)
    assert not np.array_equal(other.labels, phantom.labels)


def test_lesion_count_can_be_fixed(phantom) -> None:
    clean = make_phantom(7, SHAPE, SPACING, lesions=0)
    assert clean.info["lesions"] == 0 and not np.any(clean.labels == LESION)
    assert np.count_nonzero(clean.labels == LIVER) > 1000
    # the default draws the count as before: same seed, same phantom as without the argument
    assert phantom.info["lesions"] > 0 and np.array_equal(make_phantom(7, SHAPE, SPACING, lesions=None).ct, phantom.ct)
    many = make_phantom(7, SHAPE, SPACING, lesions=4)
    assert many.info["lesions"] == 4 and np.any(many.labels == LESION)


def test_random_grid_is_scanner_like() -> None:
    for seed in range(40):
        rng_shape, rng_spacing = random_grid(np.random.default_rng(seed))
        assert 256 <= rng_shape[0] == rng_shape[1] <= 512 and rng_shape[2] >= 32
        assert 0.6 <= rng_spacing[0] == rng_spacing[1] <= 1.0 and 1.0 <= rng_spacing[2] <= 5.0


def test_volume_is_ct_like(phantom) -> None:
    ct, lab = phantom.ct, phantom.labels
    assert ct.dtype == np.int16 and lab.dtype == np.uint8 and ct.shape == lab.shape == SHAPE
    assert set(np.unique(lab)) <= {0, LIVER, LESION} and (lab == LIVER).sum() > 1000
    assert ct.min() == -1024 and ct.max() > 400  # scanner padding and bone
    assert np.allclose(phantom.spacing, SPACING)
    # liver-like tissue outside the liver (spleen, kidneys, vessels): intensity alone does not segment it
    lo, hi = np.percentile(ct[lab == LIVER], [10, 90])
    outside = np.count_nonzero((lab == 0) & (ct >= lo) & (ct <= hi))
    assert outside > 0.2 * np.count_nonzero(lab == LIVER)
    # lungs (air inside the body) and fat are there
    assert np.count_nonzero((ct > -950) & (ct < -700)) > 1000
    assert np.count_nonzero((ct > -130) & (ct < -70)) > 1000


def test_liver_is_on_the_patients_right() -> None:
    for seed in range(5):
        p = make_phantom(seed, SHAPE, SPACING)
        ijk = np.argwhere(p.labels > 0)
        world_x = (p.affine[:3, :3] @ ijk.T + p.affine[:3, 3:4])[0]
        assert world_x.mean() > 0, f"seed {seed}: liver centroid at x={world_x.mean():.0f} mm (RAS+: +x = right)"


def test_lesions_lie_inside_the_liver_and_differ_from_it() -> None:
    seen = 0
    for seed in range(6):
        p = make_phantom(seed, SHAPE, SPACING, noise=0.0)
        lesion = p.labels == LESION
        if not lesion.any():
            continue
        seen += 1
        grown = ndimage.binary_dilation(lesion, iterations=2)
        ring = grown & ~lesion
        assert np.mean(p.labels[ring] > 0) > 0.8  # surrounded by liver
        assert abs(np.median(p.ct[lesion]) - np.median(p.ct[p.labels == LIVER])) > 15
    assert seen >= 3


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_labels_and_ct_stay_aligned_in_every_orientation(phantom, orientation: str, tmp_path: Path) -> None:
    ct_path, lab_path = write(phantom, tmp_path / "ct.nii.gz", labels_path=tmp_path / "truth.nii.gz",
                              orientation=orientation)
    ct_img, lab_img = nib.load(ct_path), nib.load(lab_path)
    assert "".join(nib.aff2axcodes(ct_img.affine)) == orientation
    for img in (ct_img, lab_img):
        sform, scode = img.header.get_sform(coded=True)
        qform, qcode = img.header.get_qform(coded=True)
        assert scode == 1 and qcode == 1
        assert np.allclose(sform, qform, atol=1e-4) and np.allclose(img.affine, ct_img.affine)
    ct, lab = np.asarray(ct_img.dataobj), np.asarray(lab_img.dataobj)
    assert ct.dtype == np.int16 and lab.dtype == np.uint8
    # every labelled voxel: same world position -> same label and same HU
    ijk = np.argwhere(phantom.labels > 0)[::37]
    world = phantom.affine[:3, :3] @ ijk.T + phantom.affine[:3, 3:4]
    inv = np.linalg.inv(ct_img.affine)
    stored = np.rint(inv[:3, :3] @ world + inv[:3, 3:4]).astype(int)
    assert np.array_equal(lab[tuple(stored)], phantom.labels[tuple(ijk.T)])
    assert np.array_equal(ct[tuple(stored)], phantom.ct[tuple(ijk.T)])
    # and nibabel's canonical view of the stored file gives back the original arrays
    assert np.array_equal(np.asarray(nib.as_closest_canonical(lab_img).dataobj), phantom.labels)


@pytest.mark.parametrize(("name", "dtype", "compress", "suffix"), [
    ("a.nii", "float32", None, ".nii"), ("b.nii.gz", "int16", None, ".nii.gz"),
    ("c", "int16", False, ".nii"), ("d.nii", "float32", True, ".nii.gz")])
def test_dtype_and_compression_options(phantom, tmp_path: Path, name: str, dtype: str, compress: bool | None,
                                       suffix: str) -> None:
    ct_path, _ = write(phantom, tmp_path / name, orientation="LPS", dtype=dtype, compress=compress)
    assert ct_path.name.endswith(suffix) and ct_path.is_file()
    with open(ct_path, "rb") as fh:
        assert (fh.read(2) == b"\x1f\x8b") == (suffix == ".nii.gz")
    img = nib.load(ct_path)
    assert img.get_data_dtype() == np.dtype(dtype)
    assert np.array_equal(np.asarray(nib.as_closest_canonical(img).dataobj), phantom.ct.astype(dtype))


def test_bad_orientation_is_refused(phantom, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="orientation"):
        write(phantom, tmp_path / "x.nii", orientation="RRS")


def test_cli_make(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "kit.phantom", "make", "--seed", "3", "--shape", "96", "80", "24",
                          "--spacing", "3", "3", "6", "--orientation", "PIR", "--dtype", "float32",
                          "--out", str(tmp_path / "ct.nii"), "--labels", str(tmp_path / "lab.nii")],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    assert "wrote" in out.stdout
    img = nib.load(tmp_path / "ct.nii")
    assert img.shape == (80, 24, 96) and "".join(nib.aff2axcodes(img.affine)) == "PIR"
    assert np.array_equal(np.asarray(nib.load(tmp_path / "lab.nii").dataobj),
                          np.transpose(make_phantom(3, (96, 80, 24), (3, 3, 6)).labels, (1, 2, 0))[::-1, ::-1, :])


def test_committed_sample_is_what_the_generator_makes(tmp_path: Path) -> None:
    cfg = Sample()
    subprocess.run([sys.executable, "-m", "kit.phantom", "sample", "--root", str(tmp_path)], cwd=ROOT,
                   check=True, capture_output=True)
    for rel in (cfg.ct, cfg.truth):
        committed, fresh = nib.load(ROOT / rel), nib.load(tmp_path / rel)
        assert np.array_equal(committed.affine, fresh.affine)
        assert np.array_equal(np.asarray(committed.dataobj), np.asarray(fresh.dataobj)), rel
    img = nib.load(ROOT / cfg.ct)
    assert img.shape[0] >= 256 and img.shape[1] >= 256 and img.shape[2] >= 64
    assert img.get_data_dtype() == np.int16 and "".join(nib.aff2axcodes(img.affine)) == cfg.orientation
    zooms = img.header.get_zooms()
    assert zooms[2] > 2 * zooms[0]  # anisotropic, like a scanner's axial series
    truth = np.asarray(nib.load(ROOT / cfg.truth).dataobj)
    assert truth.shape == img.shape and (truth == LESION).any()
    assert not any(p.name.startswith("synthetic_phantom_001_truth") for p in (ROOT / "local" / "input").iterdir())
