"""The operator with the real model on phantoms: outputs on the input's grid, aligned, transport-independent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from operator_helpers import ROOT, run_operator

from kit.phantom import make_phantom
from kit.phantom.io import write
from kit.summary import dice

SAMPLE = ROOT / "local" / "input" / "synthetic_phantom_001.nii.gz"
SAMPLE_TRUTH = ROOT / "tests" / "data" / "synthetic_phantom_001_truth.nii.gz"

# (file name, orientation, dtype, compress): several storage orders, dtypes and both file formats.
VARIANTS = [
    ("ras_int16", "RAS", "int16", True),
    ("lps_int16", "LPS", "int16", True),
    ("las_float32", "LAS", "float32", False),
    ("pir_int16", "PIR", "int16", False),
    ("sla_float32", "SLA", "float32", True),
]


def _to_ras(img: nib.Nifti1Image) -> np.ndarray:
    return np.asanyarray(nib.as_closest_canonical(img).dataobj)


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """One phantom on an anisotropic grid, stored five ways, segmented in one operator run."""
    root = tmp_path_factory.mktemp("variants")
    phantom = make_phantom(seed=2024, shape=(336, 320, 48), spacing=(0.95, 1.0, 4.0))
    (root / "in").mkdir()
    truth = {}
    for name, orientation, dtype, compress in VARIANTS:
        _ct, lab = write(phantom, root / "in" / name, labels_path=root / "truth" / name, orientation=orientation,
                         dtype=dtype, compress=compress)
        truth[name] = lab
    return root, truth, phantom


@pytest.fixture(scope="module")
def variant_run(triton_server, variants):
    root, _truth, _ph = variants
    proc = run_operator(root / "in", root / "out", triton_server.grpc_url)
    assert proc.returncode == 0, proc.stdout
    return root / "out"


@pytest.mark.parametrize("variant", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_label_map_is_on_the_input_grid(variants, variant_run, variant):
    root, _truth, _ph = variants
    name = variant[0]
    src = next((root / "in").glob(f"{name}.nii*"))
    seg_path = variant_run / f"{name}_seg.nii.gz"
    img, seg = nib.load(str(src)), nib.load(str(seg_path))
    assert seg.shape == img.shape[:3]
    assert seg.get_data_dtype() == np.uint8
    assert np.array_equal(seg.affine, img.affine)
    for form in ("sform", "qform"):
        ref_m, ref_code = getattr(img.header, f"get_{form}")(coded=True)
        out_m, out_code = getattr(seg.header, f"get_{form}")(coded=True)
        assert int(out_code) == int(ref_code)
        assert np.allclose(out_m, ref_m)
    labels = np.asanyarray(seg.dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2}
    report = json.loads((variant_run / f"{name}.json").read_text())
    assert report["shape"] == list(img.shape[:3])
    assert report["liver_volume_ml"] > 0 and report["model"]["name"] == "segmentation_liver_v1"
    assert set(report["timings_s"]) >= {"read", "preprocess", "inference", "postprocess", "write", "total"}
    assert (variant_run / f"{name}_overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("variant", VARIANTS[1:], ids=[v[0] for v in VARIANTS[1:]])
def test_flipped_and_permuted_copies_agree(variant_run, variant):
    ref = _to_ras(nib.load(str(variant_run / "ras_int16_seg.nii.gz")))
    other = _to_ras(nib.load(str(variant_run / f"{variant[0]}_seg.nii.gz")))
    assert other.shape == ref.shape
    assert dice(other > 0, ref > 0) >= 0.98


@pytest.mark.parametrize("variant", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_liver_matches_phantom_truth(variants, variant_run, variant):
    _root, truth, _ph = variants
    seg = np.asanyarray(nib.load(str(variant_run / f"{variant[0]}_seg.nii.gz")).dataobj)
    gt = np.asanyarray(nib.load(str(truth[variant[0]])).dataobj)
    assert dice(seg > 0, gt > 0) >= 0.9


def test_sample_study_liver_dice(triton_server, tmp_path):
    (tmp_path / "in").mkdir()
    shutil.copyfile(SAMPLE, tmp_path / "in" / SAMPLE.name)  # a copy: links out of the input are not followed
    proc = run_operator(tmp_path / "in", tmp_path / "out", triton_server.grpc_url)
    assert proc.returncode == 0, proc.stdout
    seg = np.asanyarray(nib.load(str(tmp_path / "out" / "synthetic_phantom_001_seg.nii.gz")).dataobj)
    gt = np.asanyarray(nib.load(str(SAMPLE_TRUTH)).dataobj)
    assert dice(seg > 0, gt > 0) >= 0.9


def test_shm_and_grpc_give_identical_label_maps(triton_server, variants, tmp_path):
    root, _truth, _ph = variants
    (tmp_path / "in").mkdir()
    shutil.copyfile(root / "in" / "lps_int16.nii.gz", tmp_path / "in" / "lps.nii.gz")
    maps = {}
    for transport in ("shm", "grpc"):
        out = tmp_path / transport
        proc = run_operator(tmp_path / "in", out, triton_server.grpc_url, TRITON_TRANSPORT=transport)
        assert proc.returncode == 0, proc.stdout
        assert json.loads((out / "lps.json").read_text())["transport"] == transport
        maps[transport] = np.asanyarray(nib.load(str(out / "lps_seg.nii.gz")).dataobj)
    assert np.array_equal(maps["shm"], maps["grpc"])


def test_outputs_are_written_atomically(variant_run):
    leftovers = [p for p in Path(variant_run).rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert not leftovers
