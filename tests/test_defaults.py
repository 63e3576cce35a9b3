"""Each default has one source: the Makefile's variables and the kit's command-line defaults agree, so a
target run through make and the same module run directly do the same thing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kit.deploy import apply, play
from kit.deploy.settings import from_env
from kit.dicom import listen
from kit.dicom.config import DEFAULT_IDLE_S
from kit.pipeline import deploy, run
from kit.view import __main__ as view

ROOT = Path(__file__).resolve().parents[1]


def _makefile_defaults() -> dict[str, str]:
    text = (ROOT / "Makefile").read_text()
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^([A-Z_]+)[ \t]*\?=[ \t]*(.*)$", text, flags=re.M)}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _makefile_defaults():
        monkeypatch.delenv(name, raising=False)


def test_job_name_input_and_output_defaults_agree(clean_env: None) -> None:
    make = _makefile_defaults()
    ran, deployed = run.parse_args(["def/one-operator-pipeline.yml"]), deploy.parse_args([])
    assert ran.job_name == deployed.job_name == make["JOB_NAME"]
    assert str(ran.input_dir) == str(deployed.input_dir) == make["INPUT_DIR"]
    assert str(ran.output_dir) == make["OUTPUT_DIR"]
    assert str(deployed.models_dir) == make["MODELS_DIR"]
    assert ran.image == make["IMAGE"]


def test_viewer_defaults_agree(clean_env: None) -> None:
    """``python -m kit.view serve`` run directly shows what ``make view`` shows: the same folders and port."""
    make = _makefile_defaults()
    served = view.parse_args(["serve"])
    assert str(served.output_dir) == make["OUTPUT_DIR"]
    assert str(served.input_dir) == make["INPUT_DIR"]
    assert str(served.port) == make["VIEW_PORT"]


def test_kubernetes_defaults_agree(clean_env: None) -> None:
    """make deploy PLATFORM=kubernetes and make run-pipeline RUNTIME=kube, through make or run directly."""
    make = _makefile_defaults()
    settings = from_env({})
    assert settings.job_name == make["JOB_NAME"]
    assert settings.payload_path == f"{make['JOB_NAME']}/input"
    assert settings.namespace == make["NAMESPACE"]
    assert settings.kube_version == make["KUBE_VERSION"]
    applied, played = apply.parse_args([]), play.parse_args(["def/one-operator-pipeline.yml"])
    assert str(applied.models_dir) == str(played.models_dir) == make["MODELS_DIR"]
    assert str(played.input_dir) == make["INPUT_DIR"] and str(played.output_dir) == make["OUTPUT_DIR"]


def test_listen_idle_default_agrees(clean_env: None) -> None:
    """The bench names the listener's default LISTEN_IDLE_S (kit.dicom.config) when it judges the latency."""
    assert listen.parse_args(["serve"]).idle_s == DEFAULT_IDLE_S == float(_makefile_defaults()["LISTEN_IDLE_S"])


def test_scripts_add_no_defaults_of_their_own() -> None:
    """The shell scripts fall back to the Makefile's values, never to others (JOB_NAME was once 'local')."""
    make = _makefile_defaults()
    for script in sorted((ROOT / "scripts").glob("*.sh")):
        for name, value in re.findall(r"\$\{([A-Z_]+):-([^}]*)\}", script.read_text()):
            if make.get(name):
                assert value == make[name], f"{script.name}: ${{{name}:-{value}}} but the Makefile says {make[name]}"
