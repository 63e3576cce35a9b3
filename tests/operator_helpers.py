"""Running the real operator (``python -u -m app``) against a real Triton from tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib

ROOT = Path(__file__).resolve().parents[1]


def operator_env(in_dir: Path, out_dir: Path, grpc_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVIDIA_", "TRITON_", "ODK_"))}
    env.update({
        "NVIDIA_CLARA_INPUTPATHS": f"payload:{in_dir}",
        "NVIDIA_CLARA_OUTPUTPATHS": f"segmentation/out:{out_dir}",
        "NVIDIA_CLARA_NOSYNCLOCK": "TRUE",
        "NVIDIA_TRITON_GRPCURI": grpc_url,
    })
    env.update(extra)
    return env


def run_operator(in_dir: Path, out_dir: Path, grpc_url: str, timeout: float = 600,
                 **extra: str) -> subprocess.CompletedProcess[str]:
    """Run the operator as the image does; returns the finished process (stdout+stderr in .stdout)."""
    return subprocess.run([sys.executable, "-u", "-m", "app"], cwd=ROOT, env=operator_env(in_dir, out_dir, grpc_url,
                                                                                          **extra),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)


def load(path: Path) -> nib.Nifti1Image:
    return nib.load(str(path))


def orphaned_shm_regions() -> set[str]:
    """The operator's shared-memory regions (``odk_<pid>_...``) whose process no longer runs."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        return set()
    orphans = set()
    for p in shm.iterdir():
        parts = p.name.split("_")
        if len(parts) >= 3 and parts[0] == "odk" and parts[1].isdigit() and not Path(f"/proc/{parts[1]}").exists():
            orphans.add(p.name)
    return orphans
