"""`make demo` end to end: starts Triton, segments the sample, stops Triton, says where the results are."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import nibabel as nib

from kit.triton.readiness import free_ports

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "local" / "input" / "synthetic_phantom_001.nii.gz"


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
    assert nib.load(str(seg)).shape == nib.load(str(SAMPLE)).shape
    dice = re.search(r"Dice vs truth: liver ([0-9.]+)", log)
    assert dice and float(dice.group(1)) >= 0.9, log
    # What the demo started, it stopped.
    assert "embedded Triton stopped" in log
    assert all(_port_free(p) for p in (http, grpc, metrics))
    assert not (tmp_path / "run" / "triton" / "triton.pid").exists()
