"""Is a port free, is Triton ready: bounded polls over the KServe v2 HTTP health endpoints."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something listens on host:port (or the port cannot be bound for another reason)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        if s.connect_ex((host, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR: connections left in TIME_WAIT by a stopped server do not count as "in use".
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def free_port() -> int:
    """A port the kernel considers free right now (for tests and throwaway servers)."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct ports the kernel considers free right now (for tests and throwaway servers)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("0.0.0.0", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def model_ready_url(http_url: str, name: str, version: int | str | None = None) -> str:
    if version in (None, ""):
        return f"{http_url}/v2/models/{name}/ready"
    return f"{http_url}/v2/models/{name}/versions/{version}/ready"


def readiness(http_url: str, models: Iterable[tuple[str, int | str | None]]) -> dict[str, bool]:
    """{"server": ready?, "<model>": ready?, ...} right now."""
    state = {"server": http_ok(f"{http_url}/v2/health/ready")}
    for name, version in models:
        state[name] = state["server"] and http_ok(model_ready_url(http_url, name, version))
    return state


class NotReady(RuntimeError):
    """The server or a model did not become ready in time (or the server process ended)."""


def wait_ready(
    http_url: str,
    models: Iterable[tuple[str, int | str | None]],
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
    interval: float = 0.5,
) -> float:
    """Poll until the server and every model are ready; returns the seconds it took.

    Raises NotReady naming what is not ready when `timeout` passes or `alive()` turns False.
    """
    models = list(models)
    start = time.monotonic()
    deadline = start + timeout
    while True:
        state = readiness(http_url, models)
        if all(state.values()):
            return time.monotonic() - start
        if not alive():
            raise NotReady(f"the server process ended before it was ready (waiting on {_pending(state)})")
        if time.monotonic() >= deadline:
            raise NotReady(f"not ready after {timeout:g} s: {_pending(state)}")
        time.sleep(interval)


def _pending(state: dict[str, bool]) -> str:
    pending = [k for k, ok in state.items() if not ok]
    return "server" if "server" in pending else "model(s) " + ", ".join(pending)
