"""The container targets' one-line errors: no engine, image not built, BASE_IMAGE missing, Triton not
reachable, and the static checks cover every container file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from container_helpers import ROOT, check, make, one_error_line, output_of, require_engine, working_engine

from kit.triton.readiness import free_ports


@pytest.fixture
def docker_without_engine(tmp_path: Path) -> dict[str, str]:
    """Environment in which ENGINE=docker names a docker CLI that has no engine behind it.

    This machine's own docker CLI is such a one; where docker works, a `docker` that fails like the CLI
    without a daemon is put first on PATH instead.
    """
    if working_engine({**os.environ, "ENGINE": "docker"}) is None:
        return {"ENGINE": "docker"}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "docker"
    shim.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    shim.chmod(0o755)
    return {"ENGINE": "docker", "PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.mark.parametrize("target", ["build", "run-local"])
def test_no_engine_is_one_line(target: str, docker_without_engine: dict[str, str]) -> None:
    extra = {"RUNTIME": "container"} if target == "run-local" else {}
    line = one_error_line(make(target, env=docker_without_engine, **extra))
    assert "container engine 'docker' is not usable" in line


def test_wrap_without_base_image_is_one_line() -> None:
    line = one_error_line(make("wrap", BASE_IMAGE=""))
    assert "BASE_IMAGE is required" in line


def test_triton_not_reachable_is_one_line(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    result = make("run-local", env={"ODK_RUN_DIR": str(tmp_path / "run"), "NVIDIA_TRITON_GRPCURI": f"127.0.0.1:{port}"},
                  RUNTIME="host", OUTPUT_DIR=str(tmp_path / "out"))
    line = one_error_line(result)
    assert line == f"[odk] error: Triton not reachable at 127.0.0.1:{port}; run 'make triton'"


@pytest.mark.container
def test_image_not_built_is_one_line(tmp_path: Path) -> None:
    require_engine()
    result = make("run-local", RUNTIME="container", IMAGE="localhost/odk-never-built", TAG="none",
                  OUTPUT_DIR=str(tmp_path / "out"))
    line = one_error_line(result)
    assert "image localhost/odk-never-built:none is not built" in line and "make build" in line


@pytest.mark.container
def test_dockerfile_wrap_itself_needs_base_image() -> None:
    """Built directly, without make, Dockerfile.wrap fails and names BASE_IMAGE."""
    engine = require_engine()
    result = subprocess.run([engine, "build", "-f", "Dockerfile.wrap", "."], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode != 0, output_of(result)
    assert "BASE_IMAGE" in result.stdout + result.stderr, output_of(result)


def test_lint_covers_the_container_files() -> None:
    """hadolint and shellcheck pass on every Dockerfile and script of the container workflow."""
    dockerfiles = ["Dockerfile", "Dockerfile.wrap", "scripts/triton-cpu/Dockerfile",
                   "tests/fake-inference-base/Dockerfile"]
    scripts = ["scripts/setup-podman.sh", "scripts/build.sh", "scripts/wrap.sh", "scripts/run-local.sh",
               "scripts/triton-cpu/build.sh", "scripts/triton-cpu/tritonserver.sh",
               "tests/fake-inference-base/build.sh"]
    venv = ROOT / ".venv" / "bin"
    check(subprocess.run([str(venv / "hadolint"), *dockerfiles], cwd=ROOT, capture_output=True, text=True,
                         check=False))
    check(subprocess.run([str(venv / "shellcheck"), "-x", *scripts], cwd=ROOT, capture_output=True, text=True,
                         check=False))
