"""The Triton run state has one writer (kit.triton.state): the embedded server writes it in-process, and
scripts/triton.sh records a container through `python -m kit.triton record-container`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tiny_model import NAME, write_tiny_repository

from kit.triton.state import read_state


def test_record_container_writes_the_state_that_status_reads(tmp_path: Path) -> None:
    models = write_tiny_repository(tmp_path / "models")
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "kit.triton", "record-container", "--run-dir", str(run_dir),
                           "--models-dir", str(models), "--http-port", "18000", "--grpc-port", "18001",
                           "--metrics-port", "18002", "--engine", "podman", "--container", "odk-triton-x",
                           "--image", "localhost/odk-triton-cpu:x"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    state = read_state(run_dir)
    assert state is not None
    assert (state.mode, state.grpc_url, state.http_url) == ("container", "127.0.0.1:18001", "http://127.0.0.1:18000")
    assert (state.engine, state.container, state.image) == ("podman", "odk-triton-x", "localhost/odk-triton-cpu:x")
    assert state.model_versions() == [(NAME, "")]
    assert (run_dir / "mode").read_text().splitlines()[0] == "mode=container"
    assert not list(run_dir.glob("*.tmp"))
