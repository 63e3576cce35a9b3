"""Helpers for the container tests: running make targets, the working engine, one-line errors."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The images the container tests build once per session (tests/conftest.py); ODK_TEST_*_IMAGE override the
# names, so that work in progress does not replace the images of a suite running on the same podman storage.
OPERATOR_IMAGE = os.environ.get("ODK_TEST_OPERATOR_IMAGE") or "localhost/odk-test-operator"
OPERATOR_TAG = os.environ.get("ODK_TEST_OPERATOR_TAG") or "test"
TRITON_CPU_IMAGE = os.environ.get("ODK_TEST_TRITON_CPU_IMAGE") or "localhost/odk-triton-cpu:test"


def working_engine(env: Mapping[str, str] | None = None) -> str | None:
    """The engine scripts/lib.sh detects (docker, then podman, by what works; ENGINE honoured)."""
    out = subprocess.run(["bash", "-c", "source scripts/lib.sh && detect_engine"], cwd=ROOT,
                         capture_output=True, text=True, env=dict(env or os.environ), check=False)
    return out.stdout.strip() or None


def python_base(engine: str) -> str:
    """The Python base image builds use, as scripts/lib.sh python_base_args picks it: $PYTHON_BASE_IMAGE, else
    the local base of scripts/setup-podman.sh when the engine has it, else the official image."""
    out = subprocess.run(["bash", "-c", 'source scripts/lib.sh && python_base_args "$1"', "-", engine], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    chosen = out.stdout.split("BASE_IMAGE=", 1)
    return chosen[1].strip() if len(chosen) == 2 else "python:3.11-slim-bookworm"


def require_engine() -> str:
    """The working engine, or skip (tests/requires.py: the group 'containers'; STRICT=1 fails)."""
    from requires import requires

    requires("containers")
    engine = working_engine()
    assert engine is not None
    return engine


def make(target: str, config: pytest.Config | None = None, env: Mapping[str, str] | None = None,
         timeout: float = 600, stdin: int | None = None, **variables: str) -> subprocess.CompletedProcess[str]:
    """Run `make TARGET VAR=value...` in the repository; print the command, its [odk] lines and its time
    to the terminal (so the CI log shows what ran); the full output is in the returned result. ``stdin``: a
    file descriptor for make's standard input (else the test's own)."""
    cmd = ["make", "-C", str(ROOT), target, *(f"{k}={v}" for k, v in variables.items())]
    start = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=stdin,
                            env={**os.environ, **(env or {})}, check=False)
    took = time.monotonic() - start
    if config is not None:
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("[odk]")]
        capture = config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            print(f"\n$ {' '.join(cmd[3:])}  ->  exit {result.returncode} in {took:.1f} s")
            for line in lines:
                print(f"    {line}")
    return result


def build_triton_cpu(config: pytest.Config, ref: str) -> subprocess.CompletedProcess[str]:
    """scripts/triton-cpu/build.sh for image ``ref``, its command and time shown on the terminal."""
    start = time.monotonic()
    result = subprocess.run(["scripts/triton-cpu/build.sh"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "TRITON_CPU_IMAGE": ref}, timeout=600, check=False)
    with config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(f"\n$ scripts/triton-cpu/build.sh  ->  exit {result.returncode} in {time.monotonic() - start:.1f} s")
    return result


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def check(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, output_of(result)
    return result


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The target failed with exactly one line of its own on stderr (make's own `make: ***` aside)."""
    assert result.returncode != 0, output_of(result)
    own = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("make")]
    assert len(own) == 1, output_of(result)
    assert own[0].startswith("[odk] error: "), output_of(result)
    return own[0]
