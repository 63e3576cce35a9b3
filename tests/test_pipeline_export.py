"""The export operator (python -u -m app.export) under the real driver, on study reports."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_study(folder: Path, stem: str, liver: float, lesion: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}_seg.nii.gz").write_bytes(f"labels of {stem}".encode())
    report = {"input": f"/input/{stem}.nii.gz", "shape": [64, 64, 32], "spacing_mm": [0.9, 0.9, 3.0],
              "liver_volume_ml": liver, "lesion_volume_ml": lesion,
              "outputs": {"segmentation": f"{stem}_seg.nii.gz", "overlay": f"{stem}_overlay.png",
                          "report": f"{stem}.json"}}
    (folder / f"{stem}.json").write_text(json.dumps(report))


def run_export(inputs: str, output: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NVIDIA_")}
    env.update({"NVIDIA_CLARA_INPUTPATHS": inputs, "NVIDIA_CLARA_OUTPUTPATHS": f"export/summary:{output}",
                "NVIDIA_CLARA_NOSYNCLOCK": "TRUE", "NVIDIA_CLARA_JOBNAME": "export-test", **extra})
    return subprocess.run([sys.executable, "-u", "-m", "app.export"], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False, timeout=120)


def test_summary_of_every_study_with_label_maps(tmp_path: Path) -> None:
    seg = tmp_path / "segmentation"
    write_study(seg, "case_b", 1500.25, 12.5)
    write_study(seg / "nested", "case_a", 1200.0, 0.0)
    (seg / "unrelated.json").write_text('{"not": "a study report"}')
    out = tmp_path / "out"
    proc = run_export(f"segmentation/segmentation:{seg}", out)
    assert proc.returncode == 0, proc.stderr
    assert f"input entry 'segmentation/segmentation' -> {seg}" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == [{"name": "segmentation/segmentation", "path": str(seg)}]
    assert summary["job"] == "export-test" and summary["operator"] == "export"
    assert [s["study"] for s in summary["studies"]] == ["case_b", "nested/case_a"]
    assert summary["totals"] == {"studies": 2, "liver_volume_ml": 2700.25, "lesion_volume_ml": 12.5}
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert rows[1] == {"entry": "segmentation/segmentation", "study": "nested/case_a", "shape": "64x64x32",
                       "spacing_mm": "0.9x0.9x3", "liver_volume_ml": "1200.0", "lesion_volume_ml": "0.0",
                       "segmentation": "nested/case_a_seg.nii.gz"}
    assert (out / "labels" / "nested" / "case_a_seg.nii.gz").read_bytes() == b"labels of case_a"
    assert not [p for p in out.rglob("*.tmp")]


def test_labels_not_copied_when_disabled_and_failures_exit_non_zero(tmp_path: Path) -> None:
    seg = tmp_path / "seg"
    write_study(seg, "ok", 1.0, 0.0)
    (seg / "broken.json").write_text("{not json")
    proc = run_export(f"segmentation/segmentation:{seg}", tmp_path / "out", EXPORT_COPY_LABELS="false")
    assert proc.returncode == 1
    assert "broken.json: not a readable study report" in proc.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["totals"]["studies"] == 1
    assert not (tmp_path / "out" / "labels").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_export(f"segmentation/segmentation:{empty}", tmp_path / "out2")
    assert proc.returncode == 1 and "no study reports" in proc.stderr


def test_same_name_studies_in_sub_folders_stay_distinct(tmp_path: Path) -> None:
    seg = tmp_path / "segmentation"
    write_study(seg / "site_a", "case", 1000.0, 1.0)
    write_study(seg / "site_b", "case", 2000.0, 2.0)
    out = tmp_path / "out"
    proc = run_export(f"segmentation/segmentation:{seg}", out)
    assert proc.returncode == 0, proc.stderr
    assert "copied 2 label map(s)" in proc.stderr
    assert (out / "labels" / "site_a" / "case_seg.nii.gz").read_bytes() == b"labels of case"
    assert (out / "labels" / "site_b" / "case_seg.nii.gz").read_bytes() == b"labels of case"
    assert not (out / "labels" / "case_seg.nii.gz").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["study"], s["liver_volume_ml"]) for s in summary["studies"]] == [("site_a/case", 1000.0),
                                                                              ("site_b/case", 2000.0)]
    assert summary["totals"]["studies"] == 2
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["segmentation"] for r in rows] == ["site_a/case_seg.nii.gz", "site_b/case_seg.nii.gz"]


def test_two_entries_with_the_same_study_fail_naming_both(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write_study(first, "case", 1000.0, 1.0)
    write_study(second, "case", 2000.0, 2.0)
    (second / "case_seg.nii.gz").write_bytes(b"other labels")
    out = tmp_path / "out"
    proc = run_export(f"op1/seg:{first};op2/seg:{second}", out)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1
    assert f"label maps {first}/case_seg.nii.gz and {second}/case_seg.nii.gz would both be copied" in errors[0]
    assert not out.exists() or not list(out.rglob("*")), "nothing is written before the clash is found"
    proc = run_export(f"op1/seg:{first};op2/seg:{second}", out, EXPORT_COPY_LABELS="false")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["entry"], s["study"]) for s in summary["studies"]] == [("op1/seg", "case"), ("op2/seg", "case")]


def test_the_same_folder_under_two_names_is_read_once(tmp_path: Path) -> None:
    seg = tmp_path / "seg"
    write_study(seg, "case", 1000.0, 1.0)
    out = tmp_path / "out"
    proc = run_export(f"segmentation/segmentation:{seg};again/seg:{seg}/.", out)
    assert proc.returncode == 0, proc.stderr
    assert "ERROR" not in proc.stderr
    assert "input entry 'again/seg' is the same folder as 'segmentation/segmentation'" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"] == {"studies": 1, "liver_volume_ml": 1000.0, "lesion_volume_ml": 1.0}
    assert (out / "labels" / "case_seg.nii.gz").read_bytes() == b"labels of case"
