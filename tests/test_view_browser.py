"""``make view`` on the sample's results, looked at in a real headless Chromium (WebGL through SwiftShader).

The page must list the sample with its volumes, load the CT and the label map without a console error and
without a request leaving this server, and its axial view must show the label colours exactly where the label
map's voxels project onto the screen (and grey CT where the body has no label).
Set ODK_VIEW_SCREENSHOT=docs/viewer.png to also write the picture of the whole viewer page there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from operator_helpers import run_operator
from PIL import Image
from scipy import ndimage
from view_helpers import ROOT, make_view, write_classes_report, write_ct_and_seg, write_report

from odk.overlay import PALETTE

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
NODE_MODULES = ROOT / "kit" / "view" / "node_modules"
SAMPLE = ROOT / "local" / "input"


def need_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, NODE_MODULES / "playwright-core", NODE_MODULES / "@niivue" / "niivue")
               if not p.exists()]
    if missing:
        message = f"{', '.join(missing)} missing; run scripts/setup-viewer.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def sample_results(triton_server, tmp_path_factory) -> Path:
    """The operator's real outputs for the sample study (the embedded Triton of the session)."""
    need_browser()
    out = tmp_path_factory.mktemp("view-sample") / "output"
    result = run_operator(SAMPLE, out, triton_server.grpc_url)
    assert result.returncode == 0, result.stdout
    # And a study whose CT is nowhere in INPUT_DIR: its page must say so.
    write_ct_and_seg(None, out / "elsewhere" / "lost_seg.nii.gz")
    lost = write_report(out / "elsewhere", "lost", "/input/lost.nii.gz")
    report = json.loads(lost.read_text())
    del report["model"]["hu_window"]  # and its report gives no HU window: no "model" preset on its page
    lost.write_text(json.dumps(report))
    # And a study of a model with other classes than liver/lesion: the table and its page show its own.
    labels = write_ct_and_seg(None, None)
    labels[16:20, 12:16, 2:6] = 3
    (out / "other").mkdir()
    nib.Nifti1Image(labels, np.diag([-2.0, -2.0, 3.0, 1.0])).to_filename(out / "other" / "abdomen_seg.nii.gz")
    path = write_classes_report(out / "other", "abdomen", "/input/abdomen.nii.gz", OTHER_CLASSES)
    report = json.loads(path.read_text())
    report["model"]["hu_window"] = OTHER_HU_WINDOW
    path.write_text(json.dumps(report))
    return out


OTHER_CLASSES = {"spleen": 210.5, "cyst": 3.4, "kidney": 150.0}
OTHER_HU_WINDOW = [-100.0, 250.0]


def drive(url: str, shots: Path, study: str, axial_slice: int, whole_page: bool) -> dict:
    argv = ["node", str(ROOT / "tests" / "view_browser.cjs"), url, str(shots), study, str(axial_slice)]
    argv += ["page"] if whole_page else []
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES), "CHROMIUM": str(CHROMIUM)}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout.strip().splitlines()[-1])


def canonical(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    img = nib.as_closest_canonical(nib.load(str(path)))
    return np.asarray(img.dataobj), tuple(float(z) for z in img.header.get_zooms()[:3])


class AxialProjection:
    """Where each voxel of one RAS axial slice lands on the canvas: the slice's field of view fitted into the
    tile (aspect kept, centred), the patient's right on the screen's left (radiological convention, as the QA
    overlay), anterior up."""

    def __init__(self, tile: list[float], shape: tuple[int, ...], zooms: tuple[float, ...]) -> None:
        left, top, width, height = tile
        self.nx, self.ny = shape[0], shape[1]
        self.sx, self.sy = zooms[0], zooms[1]
        self.scale = min(width / (self.nx * self.sx), height / (self.ny * self.sy))
        self.left = left + (width - self.nx * self.sx * self.scale) / 2
        self.top = top + (height - self.ny * self.sy * self.scale) / 2

    def pixels(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i, j = np.nonzero(mask)
        cols = self.left + (self.nx - 1 - i + 0.5) * self.sx * self.scale
        rows = self.top + (self.ny - 1 - j + 0.5) * self.sy * self.scale
        return np.floor(rows).astype(int), np.floor(cols).astype(int)

    def voxels(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        i = self.nx - 1 - np.floor((cols + 0.5 - self.left) / (self.sx * self.scale)).astype(int)
        j = self.ny - 1 - np.floor((rows + 0.5 - self.top) / (self.sy * self.scale)).astype(int)
        ok = (i >= 0) & (i < self.nx) & (j >= 0) & (j < self.ny)
        return i, j, ok


def is_liver(rgb: np.ndarray) -> np.ndarray:  # green (40, 200, 70) at full opacity, as in the QA overlay
    return (rgb[..., 0] < 110) & (rgb[..., 1] > 150) & (rgb[..., 2] < 130)


def is_lesion(rgb: np.ndarray) -> np.ndarray:  # red (235, 40, 40)
    return (rgb[..., 0] > 180) & (rgb[..., 1] < 100) & (rgb[..., 2] < 100)


def is_grey(rgb: np.ndarray) -> np.ndarray:
    return (rgb.max(axis=-1).astype(int) - rgb.min(axis=-1)) < 25


def test_make_view_shows_the_sample_with_its_label_map(sample_results: Path, tmp_path: Path) -> None:
    name = "synthetic_phantom_001"
    report = json.loads((sample_results / f"{name}.json").read_text())
    labels, zooms = canonical(sample_results / f"{name}_seg.nii.gz")
    ct, _ = canonical(SAMPLE / f"{name}.nii.gz")
    k = int(np.argmax((labels == 2).sum(axis=(0, 1))))  # the axial slice with the most lesion (in the liver)

    whole_page = bool(os.environ.get("ODK_VIEW_SCREENSHOT"))
    with make_view(sample_results, SAMPLE, tmp_path / "run") as view:
        seen = drive(view.url, tmp_path, f"{name}.json", k, whole_page)

    errors = [m for m in seen["console"] if not m.startswith("warning:")]
    assert errors == [] and seen["refused"] == [] and seen["failed"] == [], seen
    (row,) = [s for s in seen["index"]["studies"] if s["id"] == f"{name}.json"]
    cells = row["cells"]
    assert cells[0] == name and cells[2] == "ok" and cells[3] == " × ".join(map(str, report["shape"]))
    assert cells[5] == f"liver: {report['liver_volume_ml']:.1f} mL, lesion: {report['lesion_volume_ml']:.1f} mL"
    assert cells[7] == report["transport"] and cells[8] == f"{report['model']['name']} v{report['model']['version']}"
    assert seen["index"]["headers"][5] == "volumes"
    # The other model's study: its own classes, in label order, and no liver/lesion anywhere in its row.
    (other,) = [s for s in seen["index"]["studies"] if s["id"] == "other/abdomen.json"]
    assert other["cells"][5] == "spleen: 210.5 mL, cyst: 3.4 mL, kidney: 150.0 mL", other
    assert other["volumes"] == [[c, f"{c}: {ml:.1f} mL"] for c, ml in OTHER_CLASSES.items()]
    assert not any("liver" in c or "lesion" in c for c in other["cells"][:8]), other  # [8]: the model's name

    study = seen["study"]
    for url in ("/vendor/niivue.js", "/ct?source=out&id=synthetic_phantom_001.json",
                f"/files/{name}_seg.nii.gz?source=out"):
        assert url in seen["served"], (url, seen["served"])
    assert study["ready"] == "1" and study["problems"] == [] and study["webgl2"], study
    assert [v["name"] for v in study["volumes"]] == [f"{name}.nii.gz", f"{name}_seg.nii.gz"]
    assert all(v["dimsRAS"][1:] == list(labels.shape) for v in study["volumes"])
    assert study["volumes"][0]["cal"] == report["model"]["hu_window"]
    # One liver volume on the page, the report's (label_nesting organ: the liver's includes its lesions), in the
    # header and in the legend alike; not the voxels of label 1 alone.
    liver, lesion = report["liver_volume_ml"], report["lesion_volume_ml"]
    assert report["model"]["label_nesting"] == "organ" and report["labels"]["liver"]["volume_ml"] < liver
    assert study["legend"] == [f"1 liver — {liver:.1f} mL (lesion included)", f"2 lesion — {lesion:.1f} mL"]
    assert f" · liver {liver:.1f} mL (lesion included) · lesion {lesion:.1f} mL · " in study["facts"], study["facts"]
    # The label colours are the QA overlay's (app/overlay.py): liver green, lesion red.
    assert study["swatches"] == [f"rgb({r}, {g}, {b})" for r, g, b in PALETTE[:2]]
    assert is_liver(np.array(PALETTE[0])) and is_lesion(np.array(PALETTE[1]))
    assert abs(study["crosshair"][2] - (k + 0.5) / labels.shape[2]) < 1e-6

    shot = np.asarray(Image.open(tmp_path / "axial.png").convert("RGB"))
    assert shot.shape[:2] == (study["canvas"]["height"], study["canvas"]["width"])
    proj = AxialProjection(study["slices"][0]["ltwh"], labels.shape, zooms)
    lab, hu = labels[:, :, k], ct[:, :, k]
    inner = {"liver": ndimage.binary_erosion(lab == 1, iterations=2),
             "lesion": ndimage.binary_erosion(lab == 2, iterations=2),
             "body": ndimage.binary_erosion((lab == 0) & (hu > -300), iterations=3)}
    for part, test in (("liver", is_liver), ("lesion", is_lesion), ("body", is_grey)):
        rows, cols = proj.pixels(inner[part])
        assert rows.size > 200, part
        hit = test(shot[rows, cols]).mean()
        assert hit > 0.95, f"{part}: only {hit:.1%} of its voxels' pixels have its colour"

    # And the other way round: the label colours on the screen are where the label map has labels.
    rows, cols = np.nonzero(is_liver(shot) | is_lesion(shot))
    i, j, ok = proj.voxels(rows, cols)
    assert ok.mean() > 0.99
    near = ndimage.binary_dilation(lab > 0, iterations=1)
    assert near[i[ok], j[ok]].mean() > 0.99 and rows.size > 0.5 * (lab > 0).sum() * (proj.sx * proj.scale) ** 2

    controls = seen["controls"]
    assert controls["active"] == "coronal" and controls["axCorSag"] == [1], controls
    assert controls["cal"] == [-160, 240] and controls["huInputs"] == ["-160", "240"] and controls["opacity"] == 0.3
    assert controls["modelCal"] == report["model"]["hu_window"]  # the "model" preset: the report's window

    others = {o["id"]: o for o in seen["others"]}
    assert set(others) == {"elsewhere/lost.json", "other/abdomen.json"}, others
    lost = others["elsewhere/lost.json"]
    assert lost["ready"] == "1" and lost["volumes"] == ["lost_seg.nii.gz"]
    assert lost["problems"] == [f"label map without its CT: no lost.nii.gz / lost.nii under {SAMPLE} (the report "
                                "says /input/lost.nii.gz). Showing the label map alone."]
    abdomen = others["other/abdomen.json"]
    assert abdomen["ready"] == "1" and abdomen["volumes"] == ["abdomen_seg.nii.gz"], abdomen
    assert abdomen["legend"] == [f"{i} {c} — {ml:.1f} mL" for i, (c, ml) in enumerate(OTHER_CLASSES.items(), 1)]
    assert abdomen["modelWindow"] == ",".join(f"{v:g}" for v in OTHER_HU_WINDOW), abdomen
    assert lost["modelWindow"] is None, lost

    if whole_page:
        target = Path(os.environ["ODK_VIEW_SCREENSHOT"])
        shutil.copyfile(tmp_path / "viewer.png", target if target.is_absolute() else ROOT / target)
