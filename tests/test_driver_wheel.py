"""The committed driver wheel: identical to what the source builds, and working when installed alone.

The end-to-end tests install lib/clara_pipeline_driver-*.whl (not the source) into a fresh venv with no
index, and run a tiny operator through it as a program, checking its exit codes and its log.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = ROOT / "lib" / "clara-pipeline-driver"
WHEEL_NAME = "clara_pipeline_driver-0.1.0-py3-none-any.whl"
COMMITTED_WHEEL = ROOT / "lib" / WHEEL_NAME
TRACEBACK = "Traceback (most recent call last)"

TINY_OPERATOR = '''
import logging
import os
import time

import clara

log = logging.getLogger("tinyop")


def execute(driver, payload):
    log.info("clara imported from %s", clara.__file__)
    mode = os.environ["TINYOP_MODE"]
    if mode == "raise":
        raise RuntimeError("tinyop exploded")
    if mode == "false":
        return False
    if mode == "sleep":
        time.sleep(60)
    source = payload.input_entries["payload"].path
    target = clara_payload.output_entries["tinyop/listing"].path
    names = sorted(p.name for p in source.iterdir())
    (target / "listing.txt").write_text(f"{driver.stage_name} {driver.job_name}: {' '.join(names)}")
    return True


if __name__ == "__main__":
    raise SystemExit(clara.run(execute_handler=execute))
'''


# The ODK's own main pattern, exactly: nothing reads wait_for_completion()'s result or sets an exit code.
SEED_OPERATOR = '''
import os
import time

from clara import Driver


def execute(driver, payload):
    mode = os.environ["TINYOP_MODE"]
    if mode == "raise":
        raise RuntimeError("seedop exploded")
    if mode == "false":
        return False
    if mode == "sleep":
        time.sleep(60)
    return True


driver = Driver(execute_handler=execute)
driver.start()
driver.wait_for_completion()
'''

# The documented way out of the exit: the boolean, and the code on the driver.
KEEP_GOING_OPERATOR = '''
from clara import Driver

driver = Driver(execute_handler=lambda driver, payload: False)
driver.start()
print("returned", driver.wait_for_completion(exit_on_failure=False), driver.exit_code)
'''


def wheel_contents(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as wheel:
        return {info.filename: wheel.read(info) for info in wheel.infolist()}


def test_committed_wheel_matches_a_fresh_build(tmp_path: Path) -> None:
    assert COMMITTED_WHEEL.is_file(), f"{COMMITTED_WHEEL} is missing; run 'make wheel'"
    subprocess.run(["bash", str(ROOT / "scripts" / "build-wheel.sh"), str(tmp_path)], check=True, timeout=120,
                   capture_output=True)
    fresh = wheel_contents(tmp_path / WHEEL_NAME)
    committed = wheel_contents(COMMITTED_WHEEL)
    changed = sorted(name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name))
    assert not changed, f"lib/{WHEEL_NAME} is stale ({', '.join(changed)} differ); run 'make wheel' and commit it"
    assert "clara_pipeline_driver-0.1.0.dist-info/RECORD" in committed


def test_wheel_is_standard_library_only() -> None:
    contents = wheel_contents(COMMITTED_WHEEL)
    metadata = contents["clara_pipeline_driver-0.1.0.dist-info/METADATA"].decode()
    assert "Requires-Dist" not in metadata
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in contents)
    imported: set[str] = set()
    for name, data in contents.items():
        if name.endswith(".py"):
            for node in ast.walk(ast.parse(data, name)):
                if isinstance(node, ast.Import):
                    imported.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported.add(node.module.split(".")[0])
    assert imported - {"__future__"} <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


@dataclass(frozen=True)
class Installed:
    python: Path
    site_packages: Path
    operator_dir: Path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """A fresh venv with only the committed wheel installed (offline), and the tiny operator beside it."""
    root = tmp_path_factory.mktemp("driver-wheel")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--disable-pip-version-check",
         "--no-index", "--no-deps", str(COMMITTED_WHEEL)],
        check=True, timeout=120,
    )
    site_packages = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip())
    operator_dir = root / "op"
    (operator_dir / "tinyop").mkdir(parents=True)
    (operator_dir / "tinyop" / "__init__.py").write_text("")
    (operator_dir / "tinyop" / "__main__.py").write_text(textwrap.dedent(TINY_OPERATOR))
    (operator_dir / "seedop.py").write_text(SEED_OPERATOR)
    (operator_dir / "keepgoing.py").write_text(KEEP_GOING_OPERATOR)
    yield Installed(python=python, site_packages=site_packages, operator_dir=operator_dir)


def run_operator(installed: Installed, tmp_path: Path, mode: str, module: str = "tinyop",
                 **extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / "liver_14.nii.gz").write_bytes(b"")
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TINYOP_MODE": mode,
        "NVIDIA_CLARA_INPUTPATHS": f"payload:{tmp_path}/in;",
        "NVIDIA_CLARA_OUTPUTPATHS": f"tinyop/listing:{tmp_path}/out",
        "NVIDIA_CLARA_NOSYNCLOCK": "TRUE",
        **extra,
    }
    return subprocess.run([str(installed.python), "-u", "-m", module], cwd=installed.operator_dir, env=environ,
                          capture_output=True, text=True, timeout=60)


def test_installed_metadata(installed: Installed) -> None:
    version = subprocess.run(
        [str(installed.python), "-c", "import importlib.metadata as m; print(m.version('clara-pipeline-driver'))"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()
    assert version == "0.1.0"


def test_operator_succeeds(installed: Installed, tmp_path: Path) -> None:
    proc = run_operator(installed, tmp_path, "ok", NVIDIA_CLARA_JOBNAME="job7")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "listing.txt").read_text() == "tinyop job7: liver_14.nii.gz"
    assert f"clara imported from {installed.site_packages}/clara/__init__.py" in proc.stderr
    assert "ERROR" not in proc.stderr


def test_operator_that_raises_exits_1_with_one_traceback(installed: Installed, tmp_path: Path) -> None:
    proc = run_operator(installed, tmp_path, "raise")
    assert proc.returncode == 1
    assert proc.stderr.count("ERROR clara: execute handler failed: RuntimeError: tinyop exploded") == 1
    assert proc.stderr.count(TRACEBACK) == 1
    assert proc.stdout == ""


def test_operator_returning_false_exits_1(installed: Installed, tmp_path: Path) -> None:
    proc = run_operator(installed, tmp_path, "false")
    assert proc.returncode == 1
    assert proc.stderr.count("ERROR clara: execute handler returned False") == 1
    assert TRACEBACK not in proc.stderr


def test_operator_timeout_exits_124(installed: Installed, tmp_path: Path) -> None:
    proc = run_operator(installed, tmp_path, "sleep", NVIDIA_CLARA_TIMEOUT="0.5")
    assert proc.returncode == 124
    assert proc.stderr.count("ERROR clara: execute handler still running after 0.5s (NVIDIA_CLARA_TIMEOUT)") == 1
    assert TRACEBACK not in proc.stderr


def test_operator_with_bad_env_exits_2(installed: Installed, tmp_path: Path) -> None:
    proc = run_operator(installed, tmp_path, "ok", NVIDIA_CLARA_OUTPUTPATHS="tinyop/listing:out")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert errors == [line for line in proc.stderr.splitlines() if "relative path 'out'" in line]
    assert len(errors) == 1
    assert TRACEBACK not in proc.stderr


def test_operator_without_readiness_signal_exits_2(installed: Installed, tmp_path: Path) -> None:
    proc = run_operator(installed, tmp_path, "ok", NVIDIA_CLARA_NOSYNCLOCK="false",
                        NVIDIA_CLARA_SYNCLOCK_PATH=f"{tmp_path}/ready", NVIDIA_CLARA_SYNCLOCK_TIMEOUT="0.3")
    assert proc.returncode == 2
    assert proc.stderr.count(f"readiness signal {tmp_path}/ready (NVIDIA_CLARA_SYNCLOCK_PATH) did not appear") == 1
    (tmp_path / "ready").touch()
    proc = run_operator(installed, tmp_path, "ok", NVIDIA_CLARA_NOSYNCLOCK="false",
                        NVIDIA_CLARA_SYNCLOCK_PATH=f"{tmp_path}/ready", NVIDIA_CLARA_SYNCLOCK_TIMEOUT="0.3")
    assert proc.returncode == 0, proc.stderr


def test_env_command_from_the_wheel(installed: Installed, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    proc = subprocess.run(
        [str(installed.python), "-m", "clara", "env"], capture_output=True, text=True, timeout=60,
        env={"NVIDIA_CLARA_INPUTPATHS": f"payload:{tmp_path}/in", "NVIDIA_CLARA_OUTPUTPATHS": f"op/o:{tmp_path}/o",
             "NVIDIA_CLARA_JOBNAME": "j"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "job      j" in proc.stdout
    assert "stage    op" in proc.stdout
    assert "wait up to 300s for /run/clara/ready" in proc.stdout


@pytest.mark.parametrize(("mode", "extra", "code"), [
    ("ok", {}, 0),
    ("raise", {}, 1),
    ("false", {}, 1),
    ("sleep", {"NVIDIA_CLARA_TIMEOUT": "0.5"}, 124),
    ("ok", {"NVIDIA_CLARA_INPUTPATHS": "payload:relative/in"}, 2),
    ("ok", {"NVIDIA_CLARA_INPUTPATHS": ""}, 2),
])
def test_seed_pattern_exits_with_the_driver_code(
    installed: Installed, tmp_path: Path, mode: str, extra: dict[str, str], code: int
) -> None:
    proc = run_operator(installed, tmp_path, mode, module="seedop", **extra)
    assert proc.returncode == code, proc.stderr


def test_empty_inputpaths_is_a_bad_environment(installed: Installed, tmp_path: Path) -> None:
    proc = run_operator(installed, tmp_path, "ok", NVIDIA_CLARA_INPUTPATHS="")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1
    assert errors[0].endswith("NVIDIA_CLARA_INPUTPATHS is empty or unset; an operator needs at least one entry, "
                              "e.g. NVIDIA_CLARA_INPUTPATHS=payload:/input")
    assert not (tmp_path / "out").exists(), "nothing is created for a bad environment"


def test_seed_pattern_can_keep_going_when_asked(installed: Installed, tmp_path: Path) -> None:
    proc = run_operator(installed, tmp_path, "ok", module="keepgoing")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "returned False 1\n"
