"""The labels come from the model's `labels` parameter everywhere: a model of three foreground classes
(a tiny ONNX graph, run by onnxruntime through the operator's own study pipeline) gets its label values,
report volumes, NIfTI description and overlay colours without any code change."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from tiny_model import MULTI_LABELS, MULTI_NAME, write_three_class_repository

import odk
from app import main as segmentation
from kit.local_model import read_local_model
from kit.triton.onnx_model import open_session
from odk.config import OperatorConfig
from odk.overlay import PALETTE


def segment_in_process(src: Path, out: Path, spec: odk.ModelSpec, predict, cfg: OperatorConfig) -> dict:
    """The segmentation operator's own steps (app/main.py), with the model called in-process, not through Triton."""
    session = SimpleNamespace(cfg=cfg, spec=spec, transport="onnxruntime", engine="onnxruntime",
                              predictor=lambda: predict)
    return segmentation.process(odk.Study(src, out), session, segmentation.prepare(session)).to_json()


HU = {"organ": -25, "core": 125, "rim": 250}  # -> 0.35, 0.65, 0.9 after the model's HU window


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("labels")
    local = read_local_model(write_three_class_repository(tmp / "models") / MULTI_NAME)
    session = open_session(local.model_file, 1)

    def predict(batch: np.ndarray) -> np.ndarray:
        return session.run([local.spec.output_name], {local.spec.input_name: batch})[0]

    ct = np.full((40, 40, 40), -1000, np.int16)
    ct[5:35, 5:35, 5:35] = HU["organ"]  # one connected organ holding the other two classes
    ct[8:32, 8:19, 8:32] = HU["core"]  # side by side, so the overlay's axial slice shows all three
    ct[8:32, 21:32, 8:32] = HU["rim"]
    src = tmp / "in" / "three.nii.gz"
    src.parent.mkdir()
    nib.save(nib.Nifti1Image(ct, np.diag([2.5, 2.5, 2.5, 1.0])), str(src))
    out = tmp / "out"
    out.mkdir()
    cfg = OperatorConfig(model_name=MULTI_NAME)
    return segment_in_process(src, out, local.spec, predict, cfg), out


def test_the_model_is_described_by_its_own_labels(study: tuple[dict, Path]) -> None:
    report, out = study
    assert tuple(report["labels"]) == MULTI_LABELS
    assert json.loads((out / "three.json").read_text()) == report


def test_label_map_and_volumes_follow_the_labels(study: tuple[dict, Path]) -> None:
    report, out = study
    seg = nib.load(out / "three_seg.nii.gz")
    labels = np.asanyarray(seg.dataobj)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    assert seg.header["descrip"].tobytes().rstrip(b"\0") == b"ODK segmentation: 0 background, 1 organ, 2 core, 3 rim"
    voxel_ml = 2.5 ** 3 / 1000
    # The block sizes, give or take the interpolated voxels on their faces.
    assert report["core_volume_ml"] == pytest.approx(24 * 11 * 24 * voxel_ml, rel=0.25)
    assert report["rim_volume_ml"] == pytest.approx(24 * 11 * 24 * voxel_ml, rel=0.25)
    assert report["organ_volume_ml"] == pytest.approx(30 ** 3 * voxel_ml, rel=0.1)  # the whole organ, parts included
    for i, name in enumerate(MULTI_LABELS):
        assert report["labels"][name]["voxels"] == int((labels == i).sum())
    assert "liver_volume_ml" not in report and "lesion_volume_ml" not in report


def test_overlay_colours_every_class(study: tuple[dict, Path]) -> None:
    _, out = study
    rgb = np.asarray(Image.open(io.BytesIO((out / "three_overlay.png").read_bytes())).convert("RGB")).reshape(-1, 3)
    colours = {tuple(c) for c in np.unique(rgb, axis=0)}
    # Blended over the grey CT, each class's colour dominates its own channel somewhere in the picture.
    for k, colour in enumerate(PALETTE[:3]):
        channel = int(np.argmax(colour))
        others = [c for c in range(3) if c != channel]
        assert any(c[channel] > max(c[o] for o in others) + 40 for c in colours), f"class {k + 1} not coloured"


def test_summary_names_the_models_classes(study: tuple[dict, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from kit.summary import main

    report, out = study
    assert main([str(out)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("three:"))
    assert f"organ {report['organ_volume_ml']:.1f} mL, core {report['core_volume_ml']:.1f} mL, rim" in line


def test_export_columns_follow_the_models_classes(study: tuple[dict, Path], tmp_path: Path) -> None:
    from app.export import export

    report, out = study
    assert export([("segmentation", out)], tmp_path, job="j", stage="export", copy=False) == 1
    header, row = (tmp_path / "summary.csv").read_text().splitlines()
    assert header == "entry,study,shape,spacing_mm,organ_volume_ml,core_volume_ml,rim_volume_ml,segmentation"
    assert f",{round(report['rim_volume_ml'], 3)}," in row
    totals = json.loads((tmp_path / "summary.json").read_text())["totals"]
    assert set(totals) == {"studies", "organ_volume_ml", "core_volume_ml", "rim_volume_ml"}


@pytest.mark.parametrize("nesting", ["organ", "none"])
def test_label_nesting_decides_the_clean_up_and_the_volumes(nesting: str, tmp_path: Path) -> None:
    """Two separate structures (a 'core' and a smaller 'rim' blob, apart): a model whose first class holds the
    others (label_nesting organ, the default) keeps one connected piece; one of side-by-side structures
    (label_nesting none) keeps both, and each volume is its own."""
    local = read_local_model(write_three_class_repository(tmp_path / "models", nesting) / MULTI_NAME)
    assert local.nested is (nesting == "organ")
    session = open_session(local.model_file, 1)

    def predict(batch: np.ndarray) -> np.ndarray:
        return session.run([local.spec.output_name], {local.spec.input_name: batch})[0]

    ct = np.full((40, 40, 40), -1000, np.int16)
    ct[4:20, 4:20, 4:20] = HU["core"]
    ct[28:36, 28:36, 28:36] = HU["rim"]
    src = tmp_path / "in" / "apart.nii.gz"
    src.parent.mkdir()
    nib.save(nib.Nifti1Image(ct, np.diag([2.5, 2.5, 2.5, 1.0])), str(src))
    (tmp_path / "out").mkdir()
    report = segment_in_process(src, tmp_path / "out", local.spec, predict, OperatorConfig(model_name=MULTI_NAME))
    assert report["model"]["label_nesting"] == nesting
    voxels = {name: report["labels"][name]["voxels"] for name in ("core", "rim")}
    voxel_ml = 2.5 ** 3 / 1000
    if nesting == "organ":
        assert voxels["core"] > 0 and voxels["rim"] == 0  # the smaller piece was cleaned up
        held = sum(report["labels"][name]["voxels"] for name in ("organ", "core", "rim"))
        assert report["organ_volume_ml"] == pytest.approx(held * voxel_ml, rel=0.01)  # the parts included
    else:
        assert voxels["core"] > 0 and voxels["rim"] > 0
        assert report["rim_volume_ml"] == pytest.approx(voxels["rim"] * voxel_ml, rel=0.01)
        assert report["organ_volume_ml"] == pytest.approx(report["labels"]["organ"]["volume_ml"], abs=1e-6)
    assert not report["warnings"]


def test_an_unknown_label_nesting_is_one_clear_refusal(tmp_path: Path) -> None:
    from odk.model import ModelMismatch

    with pytest.raises(ModelMismatch, match=r"label_nesting='nested'; expected organ .* or none"):
        read_local_model(write_three_class_repository(tmp_path / "models", "nested") / MULTI_NAME)
