"""The fork server: ``python -u -m kit.warm serve --socket PATH --owner-pid PID``.

It imports the operator image's heavy libraries (PRELOAD) and nothing of the operators themselves, so no
configuration is read, no logging configured, and no client, channel or thread exists when it forks. It
listens on a unix socket in a private folder and serves only its own user (SO_PEERCRED). One request per
connection: a JSON line (argv, env, cwd) with the child's stdin/stdout/stderr passed as file descriptors;
the answer is ``{"pid": N}`` once forked, then ``{"returncode": R}`` (negative: killed by that signal) when
the child ends. A client that goes away takes its child with it (SIGTERM, SIGKILL 10 s later). The server
ends when its owner ends or on SIGTERM/SIGINT, after ending its children's process groups, and removes its
socket.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import importlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from kit.warm.command import STARTUP_VARIABLES, parse

# What the operator image's operators import, heaviest first (python -X importtime): the DICOM stack alone is
# ~0.7 s of a SEG writer's start. Imports only: nothing here may create a client, thread or file.
PRELOAD = ("numpy", "scipy.ndimage", "nibabel", "PIL.Image", "pydicom", "highdicom", "pynetdicom",
           "tritonclient.grpc", "tritonclient.utils.shared_memory", "yaml", "setproctitle")
MAX_FDS = 3
FOLDER_PREFIX = "odk-warm-"  # the private folder kit.warm.client makes for the socket
GRACE_S = 10.0


@dataclass
class Child:
    pid: int
    conn: socket.socket
    pidfd: int
    term_sent_at: float | None = None


@dataclass
class State:
    listener: socket.socket
    selector: selectors.BaseSelector
    children: dict[int, Child] = field(default_factory=dict)  # by pid
    stopping: bool = False
    owner_fd: int = -1

    def inherited_fds(self) -> list[int]:
        """The server's own descriptors, closed in every child (it keeps only its stdin/stdout/stderr)."""
        fds = [self.listener.fileno(), self.owner_fd]
        with contextlib.suppress(Exception):
            fds.append(self.selector.fileno())  # type: ignore[attr-defined]
        for c in self.children.values():
            fds += [c.conn.fileno(), c.pidfd]
        return fds


def preload() -> list[str]:
    """Import PRELOAD; the names that could not be imported (the child then imports them itself)."""
    missing = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # a library missing from this environment: its operators import it cold
            missing.append(name)
    return missing


def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    """One JSON line and up to MAX_FDS descriptors (SCM_RIGHTS) from a connection."""
    fds = array.array("i")
    data = b""
    while not data.endswith(b"\n"):
        msg, ancdata, _flags, _addr = conn.recvmsg(1 << 20, socket.CMSG_LEN(MAX_FDS * fds.itemsize))
        if not msg:
            break
        data += msg
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    return json.loads(data or b"{}"), list(fds)


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[2]


def _send(conn: socket.socket, message: dict) -> None:
    with contextlib.suppress(OSError):
        conn.sendall((json.dumps(message) + "\n").encode())


def _run_child(request: dict, fds: list[int], inherited: list[int]) -> int:
    """In the forked child: become the operator (its session, streams, cwd, environment, argv), run it."""
    import atexit
    import io
    import logging
    import runpy
    import threading
    import traceback

    os.setsid()
    with contextlib.suppress(ImportError):  # ps shows the operator's command line, not the server's
        import setproctitle

        setproctitle.setproctitle(" ".join(request["command"]["argv"]))
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    for fd in {*fds, *inherited}:
        if fd > 2:  # -1 (no owner descriptor) is skipped too
            with contextlib.suppress(OSError):
                os.close(fd)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    job = os.environ.get("ODK_LISTEN_JOB")  # a listener's job: it must find this operator, which /proc shows
    if job:  # with the server's environment, to stop it or end it after a crash (kit.dicom.procgroup)
        from kit.dicom import procgroup

        with contextlib.suppress(OSError):
            procgroup.claim(Path(job))
    # -u: unbuffered binary layer, text written through, as `python -u` sets stdout and stderr up.
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8", errors="replace")
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                                  write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                                  write_through=True)
    sys.__stdout__, sys.__stderr__, sys.__stdin__ = sys.stdout, sys.stderr, sys.stdin
    root = logging.getLogger()  # configured fresh by the operator, as in a new interpreter
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    command = request["command"]
    code = 0
    try:
        if command["module"]:
            sys.argv = [command["argv"][0], *command["args"]]  # runpy puts the module's file in argv[0]
            sys.path[0] = os.getcwd()
            runpy.run_module(command["module"], run_name="__main__", alter_sys=True)
        else:
            script = command["script"]
            sys.argv = [script, *command["args"]]
            sys.path[0] = os.path.dirname(os.path.abspath(script))
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 128 + signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    # What an interpreter does on its way out: wait for non-daemon threads, run the atexit handlers.
    with contextlib.suppress(Exception):
        threading._shutdown()  # type: ignore[attr-defined]
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return code & 0xFF


def _refuse(conn: socket.socket, reason: str, fds: list[int]) -> None:
    _send(conn, {"cold": reason})
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    conn.close()


def _accept(state: State) -> None:
    conn, _ = state.listener.accept()
    conn.setblocking(True)
    try:
        if _peer_uid(conn) != os.getuid():
            conn.close()
            return
        request, fds = _recv_request(conn)
    except (OSError, ValueError):
        conn.close()
        return
    argv, env, cwd = request.get("argv"), request.get("env"), request.get("cwd")
    if not (isinstance(argv, list) and isinstance(env, dict) and isinstance(cwd, str) and len(fds) == MAX_FDS):
        _refuse(conn, "malformed request", fds)
        return
    command = parse(argv, sys.executable, env, dict(os.environ))
    if command is None:
        differ = [k for k in STARTUP_VARIABLES if env.get(k) != os.environ.get(k)]
        _refuse(conn, f"start-up variables differ ({', '.join(differ)})" if differ
                else "not a `python [-u] -m MODULE` or `python [-u] SCRIPT` of this interpreter", fds)
        return
    request["command"] = command.as_dict()
    inherited = [*state.inherited_fds(), conn.fileno()]
    pid = os.fork()
    if pid == 0:  # the child never returns into the server's loop
        code = 1
        try:
            code = _run_child(request, fds, inherited)
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    child = Child(pid=pid, conn=conn, pidfd=pidfd)
    state.children[pid] = child
    state.selector.register(pidfd, selectors.EVENT_READ, ("exit", child))
    state.selector.register(conn, selectors.EVENT_READ, ("client", child))
    _send(conn, {"pid": pid})


def _returncode(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _reap(state: State, child: Child) -> None:
    _, status = os.waitpid(child.pid, 0)
    _send(child.conn, {"returncode": _returncode(status)})
    for obj in (child.pidfd, child.conn):
        with contextlib.suppress(KeyError, ValueError):
            state.selector.unregister(obj)
    os.close(child.pidfd)
    child.conn.close()
    del state.children[child.pid]


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _client_gone(state: State, child: Child) -> None:
    """The client closed its end while its child runs: end the child (its whole session) as a runner would."""
    with contextlib.suppress(KeyError, ValueError):
        state.selector.unregister(child.conn)
    if child.term_sent_at is None:
        _signal_group(child.pid, signal.SIGTERM)
        child.term_sent_at = time.monotonic()


def _escalate(state: State) -> None:
    now = time.monotonic()
    for child in list(state.children.values()):
        if child.term_sent_at is not None and now - child.term_sent_at > GRACE_S:
            _signal_group(child.pid, signal.SIGKILL)


def _stop_children(state: State, grace_s: float = 5.0) -> None:
    for child in state.children.values():
        _signal_group(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while state.children and time.monotonic() < deadline:
        for child in list(state.children.values()):
            if os.waitpid(child.pid, os.WNOHANG)[0]:
                _send(child.conn, {"returncode": -signal.SIGTERM})
                child.conn.close()
                del state.children[child.pid]
        time.sleep(0.05)
    for child in list(state.children.values()):
        _signal_group(child.pid, signal.SIGKILL)
        os.waitpid(child.pid, 0)
        _send(child.conn, {"returncode": -signal.SIGKILL})
        child.conn.close()
        del state.children[child.pid]


def serve(socket_path: Path, owner_pid: int) -> int:
    missing = preload()
    state = State(listener=socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), selector=selectors.DefaultSelector())

    def stop(_signum: int, _frame: object) -> None:
        state.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    old_umask = os.umask(0o177)
    try:
        state.listener.bind(str(socket_path))
    finally:
        os.umask(old_umask)
    state.listener.listen(16)
    state.selector.register(state.listener, selectors.EVENT_READ, ("accept", None))
    state.owner_fd = os.pidfd_open(owner_pid)
    state.selector.register(state.owner_fd, selectors.EVENT_READ, ("owner", None))
    print(json.dumps({"ready": os.getpid(), "missing": missing}), flush=True)
    try:
        while not state.stopping:
            for key, _ in state.selector.select(timeout=0.5):
                kind, child = key.data
                if kind == "accept":
                    _accept(state)
                elif kind == "owner":
                    state.stopping = True
                elif kind == "exit":
                    _reap(state, child)
                elif kind == "client":
                    _client_gone(state, child)
            _escalate(state)
    finally:
        _stop_children(state)
        state.listener.close()
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        if socket_path.parent.name.startswith(FOLDER_PREFIX):  # its owner's folder, when the owner is gone
            with contextlib.suppress(OSError):
                socket_path.parent.rmdir()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kit.warm serve", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["serve"])
    p.add_argument("--socket", type=Path, required=True)
    p.add_argument("--owner-pid", type=int, required=True, help="the server ends when this process ends")
    a = p.parse_args(argv)
    return serve(a.socket, a.owner_pid)
