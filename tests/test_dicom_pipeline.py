"""def/liver-dicom-pipeline.yml end to end on the host: the sample DICOM series -> real Triton -> SEG -> storescp."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from dicom_helpers import needs_tools, storescp, write_sample
from test_dicom_seg_register import check_seg

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@needs_tools
def test_dicom_pipeline_on_the_sample(triton_server, tmp_path: Path) -> None:
    dicom = tmp_path / "input" / "CT"
    write_sample(dicom)
    out, received = tmp_path / "out", tmp_path / "received"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVIDIA_", "TRITON_", "DICOM_", "ODK_"))}
    env.update({"NVIDIA_TRITON_GRPCURI": triton_server.grpc_url, "ODK_RUN_DIR": str(tmp_path / "run")})
    with storescp(received, "PACS") as port:
        env["DICOM_DESTINATION"] = f"PACS@127.0.0.1:{port}"
        proc = subprocess.run(
            [sys.executable, "-m", "kit.pipeline.run", "def/liver-dicom-pipeline.yml", "--input-dir",
             str(tmp_path / "input"), "--output-dir", str(out), "--runtime", "host", "--job-name", "dicom-e2e"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    table = proc.stdout[re.search(r"^operator +status", proc.stdout, re.MULTILINE).start():].splitlines()
    assert [row.split()[:2] for row in table[1:]] == [["dicom-reader", "ok"], ["segmentation", "ok"],
                                                       ["dicom-seg-writer", "ok"], ["register-results", "ok"]]
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
