"""Start/stop the embedded Triton as a background process group, with pid, log and mode files.

    handle = start(Path("local/models"), Ports(8000, 8001, 8002), run_dir, timeout=120)
    ...  # tritonclient.grpc.InferenceServerClient(handle.grpc_url)
    stop(run_dir)
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kit.paths import ROOT
from kit.triton.engines import missing_runtime
from kit.triton.readiness import NotReady, port_in_use, wait_ready
from kit.triton.repository import read_repository
from kit.triton.state import (
    LOG_FILE,
    PID_FILE,
    Ports,
    RunState,
    clear_state,
    fix_libpython_path,
    log_tail,
    read_state,
    write_state,
)

WORKSPACE_PREFIX = "odk-triton-"
WILDCARDS = ("0.0.0.0", "::")


class StartError(RuntimeError):
    """The server could not be started; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Handle:
    pid: int
    ports: Ports
    run_dir: Path
    models_dir: Path
    models: tuple[tuple[str, int], ...]
    host: str = "127.0.0.1"
    ready_s: float = 0.0

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.ports.grpc}"

    @property
    def log_file(self) -> Path:
        return self.run_dir / LOG_FILE


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, process group) of a live pid, None when gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return fields[0], int(fields[2])


def _alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def is_embedded_server(pid: int) -> bool:
    """True when pid is a running `python -m kit.triton serve` (guards against a recycled pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return _alive(pid) and b"kit.triton" in argv and b"serve" in argv


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def terminate_group(pgid: int, grace_s: float = 20.0) -> None:
    """Stop the server's process group: SIGTERM to the leader alone first, so that it stops Triton as Triton
    stops (requests in flight are answered, new ones refused as UNAVAILABLE) instead of its backends dying
    under a request; then SIGTERM and, 5 s later, SIGKILL to whatever of the group remains after grace_s."""
    steps = ((os.kill, signal.SIGTERM, grace_s), (os.killpg, signal.SIGTERM, 5.0), (os.killpg, signal.SIGKILL, 5.0))
    for send, sig, wait_s in steps:
        try:
            send(pgid, sig)
        except ProcessLookupError:
            if send is os.killpg:
                return
            continue  # the leader is gone: on to its group
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            _reap(pgid)
            if not _group_members(pgid):
                return
            time.sleep(0.2)


def remove_leftovers(state: RunState | None) -> None:
    """Remove what a server (now gone) may have left when it was killed: its PyTriton workspace (only a
    folder this module made, ``<tmp>/odk-triton-*``, whatever the state file says) and its python backend's
    shared-memory regions (``/dev/shm/pytrtion<pid>-*``)."""
    if state is None:
        return
    path = Path(state.workspace) if state.workspace else None
    if path and path.parent == Path(tempfile.gettempdir()) and path.name.startswith(WORKSPACE_PREFIX):
        shutil.rmtree(path, ignore_errors=True)
    if state.pid > 0:
        for region in Path("/dev/shm").glob(f"pytrtion{state.pid}-*"):
            region.unlink(missing_ok=True)


def client_host(address: str) -> str:
    """The address clients use for a server listening on ``address`` (StartError when it is not an IP)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise StartError(f"TRITON_ADDRESS={address!r} is not an IP address; use 127.0.0.1 (the default) or "
                         "0.0.0.0 to listen on every interface") from None
    return "127.0.0.1" if str(ip) in WILDCARDS or ip.is_loopback else str(ip)


def _wait_ports_free(ports: Ports, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(port_in_use(p) for p in ports.named().values()) and time.monotonic() < deadline:
        time.sleep(0.2)


def _check_can_start(models_dir: Path, ports: Ports, run_dir: Path, skip_unservable: bool):
    previous = read_state(run_dir)
    if previous is not None:
        if previous.mode == "embedded" and is_embedded_server(previous.pid):
            raise StartError(f"an embedded Triton started here is already running (pid {previous.pid}, "
                             f"HTTP {previous.http_url}); run 'make triton-stop' first")
        if previous.mode == "container":
            raise StartError(f"a Triton container ({previous.container}) was started here; "
                             "run 'make triton-stop' first")
        remove_leftovers(previous)  # left by a server that was killed
        clear_state(run_dir)  # stale files of a server that is gone
    try:
        repo = read_repository(models_dir)
    except FileNotFoundError as exc:
        raise StartError(f"{exc}; set MODELS_DIR to a Triton model repository") from None
    if repo.unservable and not skip_unservable:
        raise StartError("model(s) the embedded server cannot serve: " + "; ".join(map(str, repo.unservable))
                         + ". Fix them, or set TRITON_SKIP_UNSERVABLE=1 to serve the others")
    missing = [f"{m.name}: {why}" for m in repo.models if (why := missing_runtime(m))]
    if missing:  # said before a server is started for nothing
        raise StartError("; ".join(missing))
    if not repo.models:
        raise StartError(f"no servable model in {models_dir}; put a model repository there "
                         "(e.g. 'make train' exports local/models) or set MODELS_DIR")
    for var, port in ports.named().items():
        if port_in_use(port):
            raise StartError(f"port {port} ({var}) is already in use; free it or choose another, "
                             f"e.g. {var}={port + 100}")
    return repo


def start(
    models_dir: Path | str,
    ports: Ports | None = None,
    run_dir: Path | str | None = None,
    timeout: float = 120.0,
    address: str = "127.0.0.1",
    skip_unservable: bool = False,
    log_verbose: int = 0,
) -> Handle:
    """Start `python -m kit.triton serve` detached; return once the server and every model are ready.

    Raises StartError (with the last log lines when the server itself failed) and leaves nothing running.
    The server listens on ``address`` only (loopback by default; 0.0.0.0 opens it to the network).
    """
    from kit.triton.state import default_run_dir

    host = client_host(address)
    ports = ports or Ports()
    models_dir = Path(models_dir).resolve()
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir()
    run_dir = run_dir.resolve()
    repo = _check_can_start(models_dir, ports, run_dir, skip_unservable)
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / LOG_FILE
    # A short path of our own (unix socket paths are limited to 107 bytes), recorded so that the next stop or
    # start removes it even when the server was killed before PyTriton could.
    workspace = Path(tempfile.mkdtemp(prefix=WORKSPACE_PREFIX))
    cmd = [sys.executable, "-u", "-m", "kit.triton", "serve", "--models-dir", str(models_dir),
           "--http-port", str(ports.http), "--grpc-port", str(ports.grpc),
           "--metrics-port", str(ports.metrics), "--address", address, "--log-verbose", str(log_verbose),
           "--workspace", str(workspace / "pytriton")]
    if skip_unservable:
        cmd.append("--skip-unservable")
    env = dict(os.environ)
    fix_libpython_path(env)
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=ROOT, env=env, start_new_session=True)
    (run_dir / PID_FILE).write_text(f"{proc.pid}\n")
    models = tuple((m.name, m.version) for m in repo.models)
    write_state(run_dir, RunState(
        mode="embedded", http_port=ports.http, grpc_port=ports.grpc, metrics_port=ports.metrics,
        models_dir=str(models_dir), models=[f"{n}:{v}" for n, v in models], host=host, pid=proc.pid,
        workspace=str(workspace),
    ))
    handle = Handle(pid=proc.pid, ports=ports, run_dir=run_dir, models_dir=models_dir, models=models, host=host)
    try:
        took = wait_ready(handle.http_url, models, timeout, alive=lambda: proc.poll() is None)
    except (NotReady, KeyboardInterrupt) as exc:
        tail = log_tail(log_path)  # what the server was doing when the wait ended, not its shutdown
        terminate_group(proc.pid)
        proc.wait()
        remove_leftovers(read_state(run_dir))
        clear_state(run_dir)
        if isinstance(exc, KeyboardInterrupt):
            raise StartError("interrupted while the embedded Triton was starting; the server was stopped") from None
        raise StartError(f"embedded Triton did not become ready: {exc}\n"
                         f"--- last lines of {log_path} ---\n{tail}") from None
    return dataclasses.replace(handle, ready_s=took)


def stop(run_dir: Path | str | None = None, grace_s: float = 20.0) -> bool:
    """Stop the embedded Triton recorded in run_dir and wait for its ports; False when none was running."""
    from kit.triton.state import default_run_dir

    run_dir = Path(run_dir) if run_dir is not None else default_run_dir()
    state = read_state(run_dir)
    if state is None or state.mode != "embedded":
        return False
    stopped = False
    if state.pid and is_embedded_server(state.pid):
        terminate_group(state.pid, grace_s)
        stopped = True
    _wait_ports_free(Ports(state.http_port, state.grpc_port, state.metrics_port))
    remove_leftovers(state)
    clear_state(run_dir)
    return stopped
