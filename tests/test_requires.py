"""The one guard for outside tools (tests/requires.py), decided on a machine state where a tool is missing:
the skip names the group and its install command, the summary block lists it, STRICT=1 makes the skip a
failure, and a run that collects no tests fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DICOM_TOOLS = {"Orthanc", "storescu", "storescp", "findscu", "echoscu", "dcmdump", "dcmcjpeg", "dcmcjpls", "dciodvfy"}


def path_without_dicom_tools(tmp_path: Path) -> str:
    """A PATH with every command of this one but dcmtk's, Orthanc and dciodvfy."""
    bin_dir = tmp_path / "bin"
    if bin_dir.is_dir():
        return str(bin_dir)
    bin_dir.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        try:
            entries = list(Path(folder).iterdir())
        except OSError:
            continue
        for entry in entries:
            target = bin_dir / entry.name
            if entry.name not in DICOM_TOOLS and not target.exists() and os.access(entry, os.X_OK):
                target.symlink_to(entry)
    return str(bin_dir)


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k != "STRICT"}  # this run's own STRICT is not theirs
    full = {**inherited, "PATH": path_without_dicom_tools(tmp_path), "PYTHONPATH": str(ROOT / "tests"), **env}
    return subprocess.run(args, cwd=tmp_path, env=full, capture_output=True, text=True, timeout=300, check=False)


def test_a_missing_tool_is_one_skip_naming_its_group_and_install_command(tmp_path: Path) -> None:
    summary = run([sys.executable, str(ROOT / "tests" / "requires.py"), "block"], tmp_path)
    assert summary.returncode == 0, summary.stderr
    (line,) = [x for x in summary.stdout.splitlines() if x.startswith("[odk]   dicom:")]
    assert "Orthanc" in line and "storescu" in line and line.endswith("install: sudo scripts/setup-dicom.sh"), line
    assert "STRICT=1" in summary.stdout.splitlines()[0]
    plan = run([sys.executable, str(ROOT / "tests" / "requires.py"), "install-plan"], tmp_path)
    assert "dicom root scripts/setup-dicom.sh" in plan.stdout.splitlines()

    (tmp_path / "test_uses_dicom.py").write_text(
        "from requires import requires\n\n\n"
        "def test_needs_dicom():\n    requires('dicom')\n\n\n"
        "def test_needs_nothing():\n    assert True\n")
    pytest_argv = [sys.executable, "-m", "pytest", "-p", "requires", "-p", "no:cacheprovider", "-rs", "-q",
                   "--rootdir", str(tmp_path), "test_uses_dicom.py"]
    lenient = run(pytest_argv, tmp_path)
    assert lenient.returncode == 0, lenient.stdout
    assert "1 passed, 1 skipped" in lenient.stdout
    assert "needs dicom (" in lenient.stdout and "install: sudo scripts/setup-dicom.sh" in lenient.stdout
    strict = run(pytest_argv, tmp_path, STRICT="1")
    assert strict.returncode == 1, strict.stdout
    assert "1 failed, 1 passed" in strict.stdout
    assert "STRICT=1: a skip is a failure here: needs dicom (" in strict.stdout


def test_a_run_that_collects_nothing_fails_and_says_why(tmp_path: Path) -> None:
    """`make test` with nothing selected fails (pytest's 'no tests collected'), with the skip summary before
    and after pytest's output."""
    done = subprocess.run([str(ROOT / "scripts" / "test.sh"), "-k", "no_test_has_this_name", "tests/test_docs.py"],
                          cwd=ROOT, env={**os.environ, "ODK_TEST_SETUP": "0",
                                         "ODK_TEST_SETUP_DIR": str(tmp_path / "setup")},
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == "[odk] error: pytest collected no tests; the suite must never pass empty", done.stderr
    first = next(x for x in lines if x.startswith(("[odk] every group", "[odk] 1 group", "[odk] 2 group")))
    assert lines.count(first) == 2, done.stderr  # the summary before and after pytest

