"""Session-wide fixtures shared by the whole suite."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

# requires.py: the one guard for outside tools (requires("dicom"), ...), and STRICT=1 turning skips into failures.
pytest_plugins = ["requires"]

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = "segmentation_liver_v1"


@dataclasses.dataclass(frozen=True)
class TritonServer:
    """A running embedded Triton: what tests need to talk to it."""

    grpc_url: str  # "127.0.0.1:<port>" for tritonclient.grpc
    http_url: str  # "http://127.0.0.1:<port>"
    metrics_url: str
    models_dir: Path
    run_dir: Path
    pid: int
    model_name: str = DEMO_MODEL


@pytest.fixture(scope="session", autouse=True)
def _plain_make_environment() -> None:
    """Tests run `make` themselves: under `make test` they must not inherit the outer make's level/flags
    (a nested make words its messages differently, `make[1]: ...`), nor the defaults it exported: a variable
    the outer make exported with its Makefile default counts as set by the caller in a nested make (`RUNTIME`
    of `make demo`, say). A value the caller really gave (`make test ENGINE=podman`) stays."""
    if "MAKELEVEL" in os.environ:
        for var, default in makefile_defaults().items():
            if os.environ.get(var) == default:
                del os.environ[var]
    for var in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES"):
        os.environ.pop(var, None)


@pytest.fixture(scope="session", autouse=True)
def _terminal_signals() -> None:
    """Tests send Ctrl-C's SIGINT to what they start, as a terminal does. A suite started in the background
    by a non-interactive shell (`nohup make test &`) inherits SIGINT ignored, and an ignored signal stays
    ignored in every child: catching it here hands the children the default disposition again."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def _no_shared_memory_left(pytestconfig: pytest.Config) -> Iterator[None]:
    """The suite leaves /dev/shm as it found it: at the end (every server of the session stopped), segments of
    servers and operators it killed (PyTriton's psm_*, the operator's odk_*) that no living process maps are
    removed, and none that this run made may remain held by it. Segments other programs on the machine hold
    (another suite running beside this one) are theirs."""
    from kit.triton.shm import kit_segments, reap_orphans, segments_in_use

    before = set(kit_segments())
    yield
    freed = reap_orphans()
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    if freed.segments and reporter is not None:
        reporter.write_line(f"[odk] {freed.line()}")
    new = set(kit_segments()) - before
    ours = segments_in_use([os.getpid(), *_descendants(os.getpid())])
    left = sorted(new & ours)
    assert not left, f"the suite left {len(left)} segment(s) in /dev/shm held by its own processes: {left}"


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def makefile_defaults() -> dict[str, str]:
    """``VAR ?= default`` of the Makefile."""
    found = re.findall(r"^([A-Z][A-Z0-9_]*)\s*\?=[ \t]*(.*?)[ \t]*$", (ROOT / "Makefile").read_text(), re.M)
    return dict(found)


# -- images, built once per session for every test that needs them ------------------------------------------
@pytest.fixture(scope="session")
def engine() -> str:
    """The working container engine (skipped without one, tests/requires.py's group 'containers')."""
    from container_helpers import require_engine

    return require_engine()


@pytest.fixture(scope="session")
def operator_image(engine: str, pytestconfig: pytest.Config) -> str:
    """`make build` of the operator image (container_helpers.OPERATOR_IMAGE:OPERATOR_TAG)."""
    from container_helpers import OPERATOR_IMAGE, OPERATOR_TAG, check, make

    check(make("build", pytestconfig, IMAGE=OPERATOR_IMAGE, TAG=OPERATOR_TAG))
    return f"{OPERATOR_IMAGE}:{OPERATOR_TAG}"


@pytest.fixture(scope="session")
def triton_cpu_image(engine: str, pytestconfig: pytest.Config) -> str:
    """The CPU Triton image of scripts/triton-cpu (container_helpers.TRITON_CPU_IMAGE)."""
    from container_helpers import TRITON_CPU_IMAGE, build_triton_cpu, check

    check(build_triton_cpu(pytestconfig, TRITON_CPU_IMAGE))
    return TRITON_CPU_IMAGE


@pytest.fixture(scope="session")
def triton_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """local/models when the demo model is there, else a tiny model repository with the same contract."""
    real = ROOT / "local" / "models"
    if (real / DEMO_MODEL / "1" / "model.onnx").is_file():
        return real
    from tiny_model import write_tiny_repository

    return write_tiny_repository(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def triton_server(triton_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """ONE real embedded Triton for the test session, on free ports; always stopped at the end."""
    from kit.triton.embedded import start, stop
    from kit.triton.readiness import free_ports
    from kit.triton.state import Ports

    run_dir = tmp_path_factory.mktemp("triton-run")
    http, grpc, metrics = free_ports(3)
    try:
        handle = start(triton_models_dir, Ports(http, grpc, metrics), run_dir, timeout=180)
        yield TritonServer(
            grpc_url=handle.grpc_url,
            http_url=handle.http_url,
            metrics_url=f"http://127.0.0.1:{metrics}/metrics",
            models_dir=triton_models_dir,
            run_dir=run_dir,
            pid=handle.pid,
        )
    finally:
        stop(run_dir)
