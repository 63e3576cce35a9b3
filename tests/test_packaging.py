"""The kit is an installable distribution: a fresh virtualenv installs it editable and runs the operator from
it, from any directory; nothing assembles PYTHONPATH or looks for the root with parents[N]; the declared
dependencies agree with the pins."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _pins(*files: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for name in files:
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if "==" in line and not line.startswith("-"):
                req = Requirement(line)
                pins[req.name.lower()] = next(iter(req.specifier)).version
    return pins


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_declared_dependencies_are_satisfied_by_the_pins() -> None:
    """Every dependency of the distribution is pinned in the requirements files, at a version it accepts."""
    pins = _pins("requirements.txt", "requirements-dev.txt")
    driver = re.search(r'__version__ = "([^"]+)"', (ROOT / "lib/clara-pipeline-driver/src/clara/__init__.py")
                       .read_text())
    assert driver, "the driver declares no __version__"
    pins["clara-pipeline-driver"] = driver.group(1)
    library = re.search(r'__version__ = "([^"]+)"', (ROOT / "lib/odk-operator/src/odk/__init__.py").read_text())
    assert library, "the operator library declares no __version__"
    pins["odk-operator"] = library.group(1)
    project = _project()
    declared = [*project["dependencies"], *project["optional-dependencies"]["kit"]]
    for spec in declared:
        req = Requirement(spec)
        assert req.name.lower() in pins, f"{req.name} is a dependency but pinned in no requirements file"
        assert req.specifier.contains(pins[req.name.lower()]), f"the pin {req.name}=={pins[req.name.lower()]} " \
                                                               f"does not satisfy {spec}"
    runtime = {Requirement(s).name.lower() for s in project["dependencies"]}
    assert set(_pins("requirements.txt")) <= runtime, "a run-time pin is not a dependency of the distribution"


def test_no_pythonpath_assembly_or_parent_root_lookups() -> None:
    """app/ and kit/ import as an installed package; only kit/paths.py knows where the checkout is."""
    offenders = []
    for path in sorted([*(ROOT / "app").rglob("*.py"), *(ROOT / "kit").rglob("*.py")]):
        text = path.read_text()
        # PYTHONPATH set or extended (a name in a list, e.g. of the variables a fork server checks, is fine)
        if re.search(r"PYTHONPATH[\"']?\]?\s*\+?=[^=]", text) or re.search(r"parents\[\d+\]", text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with the kit installed the documented way: pinned run time, driver wheel, the operator
    library, `-e .`."""
    where = tmp_path_factory.mktemp("fresh-venv") / "venv"
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    wheels = [str(p) for p in (ROOT / "lib").glob("*.whl")]
    proc = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                           "-r", "requirements.txt", *wheels, "./lib/odk-operator[dicom]", "-e", "."], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return python


@pytest.mark.slow
def test_fresh_venv_runs_the_operator_from_the_installed_package(fresh_venv: Path, triton_server,
                                                                 tmp_path: Path) -> None:
    """`pip install -e .` in a fresh venv: `python -m app` runs from a directory outside the checkout, with no
    PYTHONPATH, imports the checkout's package, and processes a study through the real Triton."""
    where = subprocess.run([str(fresh_venv), "-c", "import app, kit.paths; print(app.__file__); "
                            "print(kit.paths.ROOT)"], cwd=tmp_path, capture_output=True, text=True, check=True,
                           env={"PATH": "/usr/bin:/bin"})
    app_file, root = where.stdout.split()
    assert Path(app_file) == ROOT / "app" / "__init__.py"
    assert Path(root) == ROOT
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    out_dir.mkdir()
    rng = np.random.default_rng(0)
    ct = rng.integers(-1000, 400, size=(48, 48, 20)).astype(np.int16)
    nib.save(nib.Nifti1Image(ct, np.diag([2.0, 2.0, 4.0, 1.0])), str(in_dir / "small.nii.gz"))
    env = {"PATH": "/usr/bin:/bin", "NVIDIA_CLARA_INPUTPATHS": f"payload:{in_dir}",
           "NVIDIA_CLARA_OUTPUTPATHS": f"segmentation/out:{out_dir}", "NVIDIA_CLARA_NOSYNCLOCK": "TRUE",
           "NVIDIA_TRITON_GRPCURI": triton_server.grpc_url}
    proc = subprocess.run([str(fresh_venv), "-u", "-m", "app"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out_dir / "small.json").read_text())
    assert report["shape"][:3] == [48, 48, 20]
    assert (out_dir / "small_seg.nii.gz").is_file() and (out_dir / "small_overlay.png").is_file()
    assert sys.executable != str(fresh_venv)
