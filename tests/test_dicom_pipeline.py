"""def/liver-dicom-pipeline.yml end to end on the host: DICOM series -> real Triton -> SEG -> storescp, for the
sample alone and for the sample among bad series."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from dicom_helpers import bad_folder, needs_tools, storescp, write_sample
from test_dicom_seg_register import check_seg

ROOT = Path(__file__).resolve().parents[1]


ALL_OK = [["dicom-reader", "ok"], ["segmentation", "ok"], ["dicom-seg-writer", "ok"], ["register-results", "ok"]]


def run_pipeline(triton_server, inputs: Path, out: Path, received: Path, tmp_path: Path,
                 job: str) -> subprocess.CompletedProcess[str]:
    """`make run-pipeline`'s runner on the host, with the session's Triton and a storescp as DICOM_DESTINATION."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVIDIA_", "TRITON_", "DICOM_", "ODK_"))}
    env.update({"NVIDIA_TRITON_GRPCURI": triton_server.grpc_url, "ODK_RUN_DIR": str(tmp_path / "run")})
    with storescp(received, "PACS") as port:
        env["DICOM_DESTINATION"] = f"PACS@127.0.0.1:{port}"
        return subprocess.run(
            [sys.executable, "-m", "kit.pipeline.run", "def/liver-dicom-pipeline.yml", "--input-dir",
             str(inputs), "--output-dir", str(out), "--runtime", "host", "--job-name", job],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=900)


def operator_table(stdout: str) -> list[list[str]]:
    """(operator, status) of each row of the run's summary table."""
    table = stdout[re.search(r"^operator +status", stdout, re.MULTILINE).start():].splitlines()
    return [row.split()[:2] for row in table[1:]]


@pytest.mark.slow
@needs_tools
def test_dicom_pipeline_on_the_sample(triton_server, tmp_path: Path) -> None:
    dicom = tmp_path / "input" / "CT"
    write_sample(dicom)
    out, received = tmp_path / "out", tmp_path / "received"
    proc = run_pipeline(triton_server, tmp_path / "input", out, received, tmp_path, "dicom-e2e")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert operator_table(proc.stdout) == ALL_OK
    volumes, labels = out / "dicom-reader" / "volumes", out / "segmentation" / "segmentation"
    (sidecar,) = volumes.glob("*.dicom.json")
    stem = sidecar.name[: -len(".dicom.json")]
    seg_path = out / "dicom-seg-writer" / "seg" / f"{stem}_seg.dcm"
    # the SEG of the real segmentation: clean, and equal to the operator's label map on the source grid
    check_seg(seg_path, sidecar, labels / f"{stem}_seg.nii.gz")
    (got,) = received.iterdir()
    assert pydicom.dcmread(got).SOPInstanceUID == pydicom.dcmread(seg_path).SOPInstanceUID
    report = json.loads((out / "register-results" / "report" / "register-report.json").read_text())
    assert report["destinations"][0]["ok"] and report["objects"] == 1


@pytest.mark.slow
@needs_tools
def test_good_series_gets_its_seg_beside_bad_series(triton_server, tmp_path: Path) -> None:
    """One job folder: the sample series among refused, unselected and unreadable input. The good series still
    goes through the whole pipeline; each bad one is named once with its reason, and the run succeeds as
    docs/dicom.md says for a reader that wrote at least one series."""
    sample = tmp_path / "sample"
    write_sample(sample)
    uids = bad_folder(sample, tmp_path / "input")
    out, received = tmp_path / "out", tmp_path / "received"
    proc = run_pipeline(triton_server, tmp_path / "input", out, received, tmp_path, "dicom-mixed")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-8000:]
    assert operator_table(proc.stdout) == ALL_OK

    # exactly one SEG, of the good series, reached the destination
    (got,) = received.iterdir()
    seg_dir = out / "dicom-seg-writer" / "seg"
    assert sorted(p.name for p in seg_dir.iterdir()) == [f"{uids['good']}_seg.dcm"]
    sent = pydicom.dcmread(seg_dir / f"{uids['good']}_seg.dcm")
    assert pydicom.dcmread(got).SOPInstanceUID == sent.SOPInstanceUID
    assert sent.ReferencedSeriesSequence[0].SeriesInstanceUID == uids["good"]
    report = json.loads((out / "register-results" / "report" / "register-report.json").read_text())
    assert report["objects"] == 1 and report["destinations"][0]["ok"]

    reasons = {"missing": ("REFUSED", "missing slice"), "duplicate": ("REFUSED", "duplicate slices"),
               "orientations": ("REFUSED", "orientations"), "localizer": ("REFUSED", "localizer"),
               "mr": ("not selected", "modality MR"), "sr": ("skipping", "non-image")}
    for name, words in reasons.items():
        lines = [line for line in log.splitlines() if uids[name] in line]
        assert len(lines) == 1, (name, lines)
        assert lines[0].startswith("[dicom-reader] ") and all(w in lines[0] for w in words), (name, lines[0])

    # only finished files in every output folder: no temporary or partial file anywhere
    volumes = out / "dicom-reader" / "volumes"
    assert sorted(p.name for p in volumes.iterdir()) == sorted(
        [f"{uids['good']}.nii", f"{uids['good']}.dicom.json", "reader-report.json"])
    folders = [d for d in out.glob("*/*") if d.is_dir()]  # OUTPUT_DIR/<operator>/<output>
    assert len(folders) == 4, folders
    files = [p for d in [*folders, received] for p in d.rglob("*")]
    leftovers = [p for p in files if p.name.startswith(".") or p.name.endswith((".tmp", ".part"))]
    assert not leftovers, leftovers
    assert all(p.stat().st_size > 0 for p in files if p.is_file())
