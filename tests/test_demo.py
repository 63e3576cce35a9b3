"""`make demo` end to end: starts Triton, segments the sample, stops Triton, says where the results are."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from container_helpers import make, one_error_line, output_of

from kit.triton.readiness import free_ports

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "local" / "input" / "synthetic_phantom_001.nii.gz"
# The sample's label map voxel for voxel (sha256 of its uint8 array) and its volumes with the committed model:
# a change of the operator's output on the sample is a decision made here, with its reason in the commit, never
# the side effect of a refactoring.
SAMPLE_LABELS_SHA256 = "bb23de7588564f74f58cfb0dcbc1adf30fec4b19412bb9f10dca0102533b24a8"
SAMPLE_VOLUMES_ML = {"liver_volume_ml": 1496.564, "lesion_volume_ml": 83.757}


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_make_demo(tmp_path):
    http, grpc, metrics = free_ports(3)
    out = tmp_path / "output"
    env = {**os.environ, "ODK_RUN_DIR": str(tmp_path / "run"), "TRITON_HTTP_PORT": str(http),
           "TRITON_GRPC_PORT": str(grpc), "TRITON_METRICS_PORT": str(metrics), "OUTPUT_DIR": str(out),
           "TRITON_MODE": "embedded"}
    proc = subprocess.run(["make", "-C", str(ROOT), "demo"], env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    seg = out / "synthetic_phantom_001_seg.nii.gz"
    for path in (seg, out / "synthetic_phantom_001_overlay.png", out / "synthetic_phantom_001.json"):
        assert path.is_file() and str(path) in log, log
    labels = np.asarray(nib.load(str(seg)).dataobj)
    assert labels.shape == nib.load(str(SAMPLE)).shape
    # The demo model's config.pbtxt asks for OpenVINO (f32): its label map is onnxruntime's voxel for voxel.
    assert "transport shm, engine openvino" in log, log
    assert hashlib.sha256(np.ascontiguousarray(labels).tobytes()).hexdigest() == SAMPLE_LABELS_SHA256
    report = json.loads((out / "synthetic_phantom_001.json").read_text())
    assert {k: report[k] for k in SAMPLE_VOLUMES_ML} == SAMPLE_VOLUMES_ML
    dice = re.search(r"Dice vs truth: liver ([0-9.]+)", log)
    assert dice and float(dice.group(1)) >= 0.9, log
    # What the demo started, it stopped.
    assert "embedded Triton stopped" in log
    assert all(_port_free(p) for p in (http, grpc, metrics))
    assert not (tmp_path / "run" / "triton" / "triton.pid").exists()


def _no_studies_folder(root: Path) -> Path:
    """A folder with nothing the operator would take: a label map, a hidden NIfTI, a text file, a sub-folder."""
    inp = root / "input"
    (inp / "sub").mkdir(parents=True)
    (inp / "sub" / "old_seg.nii.gz").write_bytes(SAMPLE.read_bytes())
    (inp / ".hidden.nii.gz").write_bytes(SAMPLE.read_bytes())
    (inp / "notes.txt").write_text("no CT here\n")
    return inp


@pytest.mark.parametrize("target", ["run-local", "demo"])
def test_an_input_without_studies_is_said_first_without_triton(tmp_path: Path, target: str) -> None:
    """No study in INPUT_DIR: one line naming the folder and 'make phantoms', before Triton is probed or started."""
    inp = _no_studies_folder(tmp_path)
    (closed,) = free_ports(1)
    env = {"ODK_RUN_DIR": str(tmp_path / "run"), "NVIDIA_TRITON_GRPCURI": f"127.0.0.1:{closed}",
           "TRITON_MODE": "embedded"}
    result = make(target, env=env, RUNTIME="host", INPUT_DIR=str(inp), OUTPUT_DIR=str(tmp_path / "out"))
    line = one_error_line(result)
    assert line == (f"[odk] error: no NIfTI studies (.nii / .nii.gz) under INPUT_DIR '{inp}'; put studies there or "
                    "set INPUT_DIR ('make phantoms' writes the sample study to local/input)"), output_of(result)
    assert not (tmp_path / "run" / "triton").exists() and not (tmp_path / "out").exists()


def test_a_study_in_a_sub_folder_passes_the_check(tmp_path: Path) -> None:
    """The check finds studies as the operator does (recursively, any case): the run goes on to Triton."""
    inp = _no_studies_folder(tmp_path)
    (inp / "sub" / "deeper").mkdir()
    (inp / "sub" / "deeper" / "CASE.NII.GZ").write_bytes(SAMPLE.read_bytes())
    (closed,) = free_ports(1)
    env = {"ODK_RUN_DIR": str(tmp_path / "run"), "NVIDIA_TRITON_GRPCURI": f"127.0.0.1:{closed}"}
    result = make("run-local", env=env, RUNTIME="host", INPUT_DIR=str(inp), OUTPUT_DIR=str(tmp_path / "out"))
    assert one_error_line(result) == f"[odk] error: Triton not reachable at 127.0.0.1:{closed}; run 'make triton'"
