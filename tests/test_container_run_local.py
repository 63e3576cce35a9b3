"""`make run-local` without containers: RUNTIME=auto falls back to the host, env.list is applied with the
caller's environment on top, and the payload paths are rewritten to INPUT_DIR / OUTPUT_DIR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from container_helpers import ROOT, check, make, output_of

SAMPLE = ROOT / "local" / "input"


@pytest.fixture
def embedded_run_dir(triton_server, tmp_path: Path) -> Path:
    """An ODK_RUN_DIR whose triton/ state is the session's embedded Triton (as `make triton` leaves it)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "triton").symlink_to(triton_server.run_dir)
    return run_dir


def reports(folder: Path) -> list[dict]:
    found = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    assert found, f"no report in {folder}"
    return found


def test_auto_without_image_runs_on_host(embedded_run_dir: Path, triton_server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = check(make("run-local", env={"ODK_RUN_DIR": str(embedded_run_dir)}, RUNTIME="auto",
                        IMAGE="localhost/odk-never-built", TAG="none", INPUT_DIR=str(SAMPLE), OUTPUT_DIR=str(out)))
    assert "-> RUNTIME=host" in result.stderr, output_of(result)
    assert f"Triton {triton_server.grpc_url}" in result.stderr, output_of(result)
    # The container paths of env.list (payload:/input, .../segmentation:/output) became the folders.
    assert f"payload:{SAMPLE} -> {out}" in result.stdout + result.stderr, output_of(result)
    inputs = sorted(p.name.split(".")[0] for p in SAMPLE.glob("*.nii*"))
    assert sorted(p.name.removesuffix("_seg.nii.gz") for p in out.glob("*_seg.nii.gz")) == inputs
    assert all(r["model"]["name"] == "segmentation_liver_v1" for r in reports(out))


def test_environment_overrides_env_list(embedded_run_dir: Path, tmp_path: Path) -> None:
    """env.list says TRITON_TRANSPORT=auto (shm on this host); the caller's TRITON_TRANSPORT=grpc wins."""
    out = tmp_path / "out"
    check(make("run-local", env={"ODK_RUN_DIR": str(embedded_run_dir), "TRITON_TRANSPORT": "grpc"},
               RUNTIME="host", INPUT_DIR=str(SAMPLE), OUTPUT_DIR=str(out)))
    assert {r["transport"] for r in reports(out)} == {"grpc"}


def test_env_list_documents_its_format() -> None:
    """env.list is valid --env-file input: KEY=VALUE lines and comments only, no quotes."""
    keys = []
    for line in (ROOT / "env.list").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and key.isidentifier(), line
        assert not value.startswith(("'", '"')), line
        keys.append(key)
    assert len(keys) == len(set(keys))
    for required in ("NVIDIA_CLARA_INPUTPATHS", "NVIDIA_CLARA_OUTPUTPATHS", "NVIDIA_CLARA_NOSYNCLOCK",
                     "NVIDIA_TRITON_GRPCURI", "TRITON_MODEL_NAME"):
        assert required in keys


def test_env_list_names_every_operator_variable() -> None:
    """Every variable the operator and the driver read is in env.list (set, or commented with its default)."""
    import re

    import clara.env

    text = (ROOT / "env.list").read_text()
    source = "".join(p.read_text() for p in (ROOT / "app").glob("*.py"))
    names = set(re.findall(r'"((?:NVIDIA|TRITON|ODK)_[A-Z0-9_]+)"', source)) | set(clara.env.ALL)
    assert names
    missing = sorted(n for n in names if not re.search(rf"^#? ?{n}=", text, re.MULTILINE))
    assert not missing, f"not in env.list: {missing}"
