"""Start the fork server (``WarmServer``) and run an operator from it (``spawn`` -> ``WarmProcess``).

    with WarmServer.start() as server:          # once per listener or pipeline run
        proc = spawn(server.socket, argv, env, cwd)   # None: start it cold (the reason in proc_or_reason)
        for line in proc.stdout: ...
        proc.wait()

The child is not this process's child (the server forked it), so ``WarmProcess`` has the part of
subprocess.Popen's interface the pipeline runner uses: pid, stdout, poll, wait, terminate, kill,
returncode, with the server reporting the exit status over the connection.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from kit.warm.server import FOLDER_PREFIX

# The variable that hands a started server to the pipeline runs of a listener (kit.dicom.runner).
SOCKET_VARIABLE = "ODK_WARM_SOCKET"
# ODK_WARM_START=0 starts every operator cold (one interpreter per operator, as in a container).
SWITCH_VARIABLE = "ODK_WARM_START"
READY_TIMEOUT_S = 60.0


class WarmError(RuntimeError):
    """The fork server could not be started or asked."""


def enabled(env: Mapping[str, str] | None = None) -> bool:
    return (env if env is not None else os.environ).get(SWITCH_VARIABLE, "1").strip().lower() not in ("0", "false",
                                                                                                     "no", "off")


@dataclass
class WarmServer:
    pid: int
    socket: Path
    folder: Path
    proc: subprocess.Popen[bytes]
    preloaded_missing: tuple[str, ...] = ()

    @classmethod
    def start(cls, python: str | None = None, log: Path | None = None, timeout: float = READY_TIMEOUT_S) -> WarmServer:
        """Start ``python -m kit.warm serve`` in its own session, owned by this process; return once it has
        imported its libraries and listens. Raises WarmError (and leaves nothing running) when it cannot."""
        folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))  # 0700: only this user reaches the socket
        path = folder / "fork.sock"
        argv = [python or sys.executable, "-u", "-m", "kit.warm", "serve", "--socket", str(path),
                "--owner-pid", str(os.getpid())]
        err = log.open("ab") if log else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                    start_new_session=True)
        finally:
            if log:
                err.close()  # type: ignore[union-attr]
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else b""
        try:
            hello = json.loads(line)
        except ValueError:
            hello = {}
        if "ready" not in hello:
            _end(proc)
            shutil.rmtree(folder, ignore_errors=True)
            raise WarmError("the warm-start server did not start" + (f" (exit {proc.returncode})" if ready else
                                                                     f" within {timeout:g} s"))
        return cls(pid=proc.pid, socket=path, folder=folder, proc=proc, preloaded_missing=tuple(hello["missing"]))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM (it ends its children's groups first), SIGKILL to its group after 15 s; the folder goes."""
        _end(self.proc)
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> WarmServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _end(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


class WarmProcess:
    """An operator forked by the server: its pid, its output pipe and, from the server, its exit status."""

    def __init__(self, pid: int, conn: socket.socket, stdout: IO[str]) -> None:
        self.pid = pid
        self.stdout = stdout
        self.returncode: int | None = None
        self._conn = conn
        self._buffer = b""

    def _read_status(self, timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._conn], [], [], left)
            if not ready:
                return None
            chunk = self._conn.recv(4096)
            if not chunk:  # the server went away: the child went with it (the server ends its children)
                self._buffer += b'{"returncode": -9}\n'
                break
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return int(json.loads(line)["returncode"])

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._read_status(0)
            if self.returncode is not None:
                self._conn.close()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            code = self._read_status(timeout)
            if code is None:
                raise subprocess.TimeoutExpired(f"warm-started pid {self.pid}", timeout or 0)
            self.returncode = code
            self._conn.close()
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _read_line(conn: socket.socket, timeout: float) -> dict:
    conn.settimeout(timeout)
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    conn.settimeout(None)
    return json.loads(data or b"{}")


def spawn(socket_path: Path | str, argv: Sequence[str], env: Mapping[str, str], cwd: Path | str,
          timeout: float = 30.0) -> WarmProcess | str:
    """Fork ``argv`` from the server at ``socket_path`` with its stdout and stderr on one pipe (as the runner's
    Popen has them). Returns the process, or the reason it must start cold (raises nothing for that)."""
    read_fd, write_fd = os.pipe()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        try:
            conn.settimeout(timeout)
            conn.connect(str(socket_path))
            request = json.dumps({"argv": list(argv), "env": dict(env), "cwd": str(cwd)}).encode() + b"\n"
            fds = [devnull, write_fd, write_fd]
            conn.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())])
        finally:
            os.close(devnull)
            os.close(write_fd)
            write_fd = -1
        answer = _read_line(conn, timeout)
    except (OSError, ValueError) as exc:
        conn.close()
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
        return f"the warm-start server cannot be reached ({exc})"
    if "pid" not in answer:
        conn.close()
        os.close(read_fd)
        return str(answer.get("cold") or "the warm-start server refused it")
    stdout = os.fdopen(read_fd, "r", encoding="utf-8", errors="replace", buffering=1)
    return WarmProcess(int(answer["pid"]), conn, stdout)
