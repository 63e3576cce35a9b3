"""The one guard for tests that need a tool from outside the virtualenv, by group, and the skip summary.

    from requires import requires, needs
    requires("dicom")               # in a test or fixture: skip when the group is missing here
    @needs("containers", "kube")    # on a test: the same, as a mark

A missing group skips its tests with one reason: what is missing and the one command that installs it.
With STRICT=1 (CI) every skip, of a group or any other, is a failure (this module is a pytest plugin,
loaded by tests/conftest.py). ``python tests/requires.py block`` prints the block scripts/test.sh shows
before and after pytest: the groups that will be skipped on this machine, why, and how to install each;
``python tests/requires.py missing`` prints only their names, ``install-plan`` how make test installs each
(scripts/setup-test-tools.sh).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCAL_BASE_IMAGE = "localhost/odk-python:3.11-bookworm"  # scripts/setup-podman.sh's base (scripts/lib.sh)


@dataclass(frozen=True)
class Group:
    name: str
    what: str
    install: str  # the one command that installs it
    missing: Callable[[], str | None]  # what is missing here, None when the group can run
    auto: str = "root"  # make test installs it: "root" (as root on Debian/Ubuntu), "user" (anyone), "" (never)


def _tools(*names: str) -> str | None:
    gone = [n for n in names if shutil.which(n) is None]
    return f"{', '.join(gone)} not on PATH" if gone else None


def _containers() -> str | None:
    env = dict(os.environ)
    out = subprocess.run(["bash", "-c", "source scripts/lib.sh && detect_engine"], cwd=ROOT, capture_output=True,
                         text=True, env=env, check=False, timeout=120)
    engine = out.stdout.strip()
    if not engine:
        return "no working container engine (neither 'docker info' nor 'podman info' succeeds)"
    if engine == "podman":
        base = os.environ.get("PYTHON_BASE_IMAGE") or LOCAL_BASE_IMAGE
        exists = subprocess.run(["podman", "image", "exists", base], capture_output=True, check=False, timeout=60)
        if exists.returncode != 0 and not os.environ.get("PYTHON_BASE_IMAGE"):
            return f"podman has no base image {base} (images are built without a registry)"
    return None


def _kube() -> str | None:
    if shutil.which("catatonit") or any(Path(p).is_file() for p in ("/usr/libexec/podman/catatonit",
                                                                     "/usr/bin/catatonit")):
        return None
    return "catatonit (podman kube play's init) not found"


def _browser() -> str | None:
    chromium = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    modules = ROOT / "kit" / "view" / "node_modules"
    gone = [str(p) for p in (chromium, modules / "playwright-core", modules / "@niivue" / "niivue") if not p.exists()]
    if shutil.which("node") is None:
        gone.insert(0, "node")
    return f"{', '.join(gone)} missing" if gone else None


def _bench() -> str | None:
    if (ROOT / ".venv-bench" / "bin" / "python").is_file():
        return None
    return "no .venv-bench (torch CPU + MONAI)"


def _torch() -> str | None:
    """torch and MONAI in the suite's own environment (.venv): the own-model tests serve TorchScript and import
    a MONAI bundle, as make triton and make import-bundle would install them on demand."""
    import importlib.util

    gone = [m for m in ("torch", "monai") if importlib.util.find_spec(m) is None]
    return f"{' and '.join(gone)} not in {sys.prefix}" if gone else None


GROUPS: dict[str, Group] = {g.name: g for g in (
    Group("containers", "podman (or docker) building and running the kit's images",
          "sudo scripts/setup-podman.sh", _containers),
    Group("kube", "make run-pipeline RUNTIME=kube (podman kube play)", "sudo scripts/setup-kube.sh", _kube),
    Group("browser", "the viewer's page in a real Chromium (NiiVue, playwright-core)",
          "sudo scripts/setup-viewer.sh", _browser),
    Group("dicom", "Orthanc, dcmtk and dicom3tools (the PACS, storescu/findscu/storescp, dciodvfy)",
          "sudo scripts/setup-dicom.sh",
          lambda: _tools("Orthanc", "storescu", "storescp", "findscu", "echoscu", "dcmdump", "dcmcjpeg",
                         "dcmcjpls", "dciodvfy")),
    Group("bench", "the MONAI agreement check (torch + MONAI)",
          "scripts/venv.sh .venv-bench requirements-bench.txt", _bench, auto="user"),
    Group("torch", "TorchScript models and MONAI bundles (torch CPU + MONAI in .venv)",
          "scripts/venv.sh .venv requirements-monai.txt", _torch, auto="user"),
    Group("kubectl", "a real kubectl against an unreachable cluster",
          "curl -fLo kubectl https://dl.k8s.io/release/v1.34.0/bin/linux/amd64/kubectl && sudo install kubectl "
          "/usr/local/bin/", lambda: _tools("kubectl"), auto=""),
    Group("openssl", "certificates made here for the DICOM TLS tests", "sudo apt-get install -y openssl",
          lambda: _tools("openssl")),
)}


@functools.cache
def missing(group: str) -> str | None:
    """Why ``group`` cannot run here (None: it can). Checked once per process."""
    return GROUPS[group].missing()


def reason(groups: tuple[str, ...]) -> str | None:
    """The skip reason for a test needing ``groups``, or None when all are here."""
    parts = [f"needs {g} ({missing(g)}); install: {GROUPS[g].install}" for g in groups if missing(g)]
    return "; ".join(parts) or None


def requires(*groups: str) -> None:
    """Skip the calling test (a failure under STRICT=1) unless every group is here."""
    why = reason(groups)
    if why:
        pytest.skip(why)


def needs(*groups: str) -> pytest.MarkDecorator:
    """``requires`` as a mark on a test (evaluated when the test runs, not at import)."""
    return pytest.mark.usefixtures(*(f"requires_{g}" for g in groups))


def _fixture(group: str):
    @pytest.fixture()
    def check() -> None:
        requires(group)

    check.__name__ = f"requires_{group}"
    return check


for _name in GROUPS:
    globals()[f"requires_{_name}"] = _fixture(_name)


def strict() -> bool:
    return os.environ.get("STRICT", "0") not in ("", "0")


def not_installed(name: str) -> str:
    """Why scripts/setup-test-tools.sh did not install a group (it leaves a line in ODK_TEST_SETUP_DIR)."""
    folder = os.environ.get("ODK_TEST_SETUP_DIR")
    path = Path(folder) / f"{name}.why" if folder else None
    return path.read_text().strip() if path and path.is_file() else ""


def block(shown_missing: dict[str, str] | None = None) -> str:
    """The summary scripts/test.sh prints before and after pytest."""
    gone = shown_missing if shown_missing is not None else {n: m for n in GROUPS if (m := missing(n))}
    gone = {n: f"{why} ({extra})" if (extra := not_installed(n)) else why for n, why in gone.items()}
    if not gone:
        return f"[odk] every group of tests runs here ({', '.join(GROUPS)}): nothing is skipped for a missing tool"
    lines = [f"[odk] {len(gone)} group(s) of tests will be skipped here"
             + (" and STRICT=1 makes each skip a failure:" if strict() else " (STRICT=1 makes that a failure):")]
    for name, why in gone.items():
        g = GROUPS[name]
        lines.append(f"[odk]   {name}: {g.what} -- {why}; install: {g.install}")
    return "\n".join(lines)


# -- pytest plugin: STRICT=1 turns every skip into a failure ---------------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()
    if strict() and report.skipped and not hasattr(report, "wasxfail"):
        why = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        why = why.removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"STRICT=1: a skip is a failure here: {why}"


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "block"
    if command == "block":
        print(block())
        return 0
    if command == "missing":
        print(" ".join(n for n in GROUPS if missing(n)))
        return 0
    if command == "install-plan":  # what make test may install: "<group> <root|user|never> <command...>"
        for name, g in GROUPS.items():
            if missing(name):
                print(name, g.auto or "never", g.install.removeprefix("sudo "))
        return 0
    print("usage: python tests/requires.py block|missing|install-plan", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
