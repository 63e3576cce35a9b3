"""The run directory of a started Triton ($ODK_RUN_DIR/triton): what was started, so stop/status know.

Files: `mode` (key=value lines, written only here: scripts/triton.sh records a container through
`python -m kit.triton record-container`), `triton.pid`
(embedded: the server process, leader of its own process group), `triton.log` (the server's output).
"""

from __future__ import annotations

import dataclasses
import os
import sysconfig
from collections import deque
from pathlib import Path

from kit.paths import run_dir

MODE_FILE = "mode"
PID_FILE = "triton.pid"
LOG_FILE = "triton.log"


@dataclasses.dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    def named(self) -> dict[str, int]:
        return {"TRITON_HTTP_PORT": self.http, "TRITON_GRPC_PORT": self.grpc,
                "TRITON_METRICS_PORT": self.metrics}


def fix_libpython_path(environ: dict | None = None) -> str:
    """Put this interpreter's libpython directory first on LD_LIBRARY_PATH.

    The python backend stub that Triton spawns loads libpython from the linker path; without this a
    pyenv/venv interpreter's stub fails to start or picks up an older distro libpython.
    """
    environ = os.environ if environ is None else environ
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    parts = [p for p in environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    if libdir and (not parts or parts[0] != libdir):
        environ["LD_LIBRARY_PATH"] = ":".join([libdir, *[p for p in parts if p != libdir]])
    return libdir


def default_run_dir() -> Path:
    return run_dir("triton")


@dataclasses.dataclass
class RunState:
    mode: str  # "embedded" | "container"
    http_port: int
    grpc_port: int
    metrics_port: int
    models_dir: str
    models: list[str]  # "name:version" (version empty: Triton's default version)
    host: str = "127.0.0.1"
    pid: int = 0
    engine: str = ""
    container: str = ""
    image: str = ""
    workspace: str = ""  # embedded: the PyTriton workspace (sockets, a copy of tritonserver), removed at stop

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def model_versions(self) -> list[tuple[str, str]]:
        return [(m.partition(":")[0], m.partition(":")[2]) for m in self.models if m]


def write_state(run_dir: Path, state: RunState) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for field in dataclasses.fields(state):
        value = getattr(state, field.name)
        lines.append(f"{field.name}={','.join(value) if isinstance(value, list) else value}")
    path = run_dir / MODE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def read_state(run_dir: Path) -> RunState | None:
    path = run_dir / MODE_FILE
    if not path.is_file():
        return None
    raw = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    ints = ("http_port", "grpc_port", "metrics_port", "pid")
    known = {f.name for f in dataclasses.fields(RunState)}
    values: dict = {k: v for k, v in raw.items() if k in known}
    for key in ints:
        values[key] = int(values.get(key) or 0)
    values["models"] = [m for m in values.get("models", "").split(",") if m]
    values.setdefault("mode", "")
    values.setdefault("models_dir", "")
    return RunState(**values)


def clear_state(run_dir: Path) -> None:
    for name in (MODE_FILE, PID_FILE):
        (run_dir / name).unlink(missing_ok=True)


def log_tail(path: Path, lines: int = 30) -> str:
    if not path.is_file():
        return f"(no log at {path})"
    with path.open(errors="replace") as f:
        return "".join(deque(f, maxlen=lines)).rstrip()
