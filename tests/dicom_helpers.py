"""Real DICOM files and tools for the DICOM tests: the sample series, dciodvfy, dcmtk's storescp."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest

from kit.phantom import dicom as phantom_dicom
from kit.triton.readiness import free_ports

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CT = ROOT / "local" / "input" / "synthetic_phantom_001.nii.gz"
SAMPLE_TRUTH = ROOT / "tests" / "data" / "synthetic_phantom_001_truth.nii.gz"
# the pip wheel's binary, beside the virtualenv's python
DCM2NIIX = str(Path(sys.executable).with_name("dcm2niix"))
TOOLS = ("dciodvfy", "storescp", "dcmcjpeg", "dcmcjpls")
MISSING_TOOLS = [t for t in TOOLS if shutil.which(t) is None]
needs_tools = pytest.mark.skipif(bool(MISSING_TOOLS) and not os.environ.get("CI"),
                                 reason=f"missing {', '.join(MISSING_TOOLS)}: run scripts/setup-dicom.sh")


def write_sample(dest: Path, syntax: str = "explicit") -> list[Path]:
    """The sample study as a DICOM CT series (what `make phantoms` writes to local/input-dicom)."""
    return phantom_dicom.write_series(SAMPLE_CT, dest, syntax)


def operator_env(inputs: str, outputs: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVIDIA_", "TRITON_", "ODK_", "DICOM_"))}
    env.update({"NVIDIA_CLARA_INPUTPATHS": inputs, "NVIDIA_CLARA_OUTPUTPATHS": outputs,
                "NVIDIA_CLARA_NOSYNCLOCK": "TRUE"})
    env.update(extra)
    return env


def run_operator(module: str, inputs: str, outputs: str, timeout: float = 300,
                 **extra: str) -> subprocess.CompletedProcess[str]:
    """``python -u -m <module>`` under the driver, as the image runs it; stdout+stderr in .stdout."""
    return subprocess.run([sys.executable, "-u", "-m", module], cwd=ROOT, env=operator_env(inputs, outputs, **extra),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)


def dciodvfy_problems(path: Path) -> tuple[str, list[str]]:
    """dciodvfy's whole output and its Error / Warning lines."""
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False, timeout=120)
    text = proc.stdout + proc.stderr
    return text, [line for line in text.splitlines() if line.startswith(("Error", "Warning"))]


@contextmanager
def storescp(out_dir: Path, aet: str = "STORESCP", *options: str) -> Iterator[int]:
    """dcmtk's storescp on a free port, writing what it receives to ``out_dir``; always stopped."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (port,) = free_ports(1)
    proc = subprocess.Popen(["storescp", "-aet", aet, "--output-directory", str(out_dir), *options, str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"storescp exited: {proc.stdout.read() if proc.stdout else ''}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break  # listening (a refusing storescp answers no C-ECHO, so only the port is checked)
            except OSError:
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load_series(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]


def save(ds: pydicom.Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
