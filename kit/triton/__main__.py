"""python -m kit.triton serve|start|stop|status|wait|record-container|models (see docs/triton.md: make triton)."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from kit.triton.state import default_run_dir

NOT_RUNNING = 3


def _ports(args):
    from kit.triton.state import Ports

    return Ports(http=args.http_port, grpc=args.grpc_port, metrics=args.metrics_port)


def port(text: str) -> int:
    """A TCP port, 1..65535."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1..65535)")
    return value


def seconds(text: str) -> float:
    """A finite number of seconds > 0 (nan and inf would wait forever or never)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds > 0")
    return value


def _add_ports(p: argparse.ArgumentParser) -> None:
    p.add_argument("--http-port", type=port, default=8000)
    p.add_argument("--grpc-port", type=port, default=8001)
    p.add_argument("--metrics-port", type=port, default=8002)
    p.add_argument("--address", default="127.0.0.1",
                   help="address the server listens on (0.0.0.0: every interface)")


def cmd_serve(args) -> int:
    from kit.triton.server import ServeOptions, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.allow_client_shm is not None:
        logging.getLogger("kit.triton").info("--allow-client-shm: this Triton always accepts client shm")
    return serve(ServeOptions(models_dir=Path(args.models_dir), ports=_ports(args), address=args.address,
                              skip_unservable=args.skip_unservable, ort_threads=args.ort_threads,
                              log_verbose=args.log_verbose, workspace=args.workspace))


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def cmd_start(args) -> int:
    import signal

    from kit.triton.embedded import StartError, start

    signal.signal(signal.SIGTERM, _interrupt)  # like Ctrl-C: a server still starting is stopped, not orphaned
    try:
        h = start(args.models_dir, _ports(args), args.run_dir, args.timeout, args.address,
                  args.skip_unservable)
    except StartError as exc:
        head, _, tail = str(exc).partition("\n")
        if tail:
            print(tail, file=sys.stderr)
        print(f"[odk] error: {head}", file=sys.stderr)
        return 1
    print(f"[odk] embedded Triton ready in {h.ready_s:.1f} s (pid {h.pid}, log {h.log_file})",
          file=sys.stderr)
    print(f"[odk]   gRPC {h.grpc_url}  HTTP {h.http_url}  models: "
          + ", ".join(f"{n} (v{v})" for n, v in h.models), file=sys.stderr)
    return 0


def cmd_stop(args) -> int:
    from kit.triton.embedded import stop

    stopped = stop(args.run_dir)
    print("[odk] embedded Triton stopped" if stopped else "[odk] no embedded Triton was running",
          file=sys.stderr)
    return 0


def cmd_status(args) -> int:
    from kit.triton.embedded import is_embedded_server
    from kit.triton.onnx_engine import served_engine
    from kit.triton.readiness import readiness
    from kit.triton.state import read_state

    state = read_state(Path(args.run_dir))
    if state is None:
        print(f"triton: not running (no 'make triton' state in {args.run_dir}); start it with 'make triton'")
        return NOT_RUNNING
    if state.mode == "embedded" and not is_embedded_server(state.pid):
        print(f"triton: not running (embedded server pid {state.pid} is gone); 'make triton-stop' cleans up, then"
              " 'make triton' starts it")
        return NOT_RUNNING
    ready = readiness(state.http_url, state.model_versions())
    where = f"pid {state.pid}" if state.mode == "embedded" else f"{state.engine} container {state.container}"
    print(f"triton: {state.mode} ({where}), server {'ready' if ready['server'] else 'NOT ready'}")
    print(f"  gRPC    {state.grpc_url}\n  HTTP    {state.http_url}\n  metrics {state.metrics_url}")
    print(f"  models  {state.models_dir}")
    for name, version in state.model_versions():
        engine = served_engine(state.http_url, name) if ready.get(name) else ""
        print(f"    {name}{' v' + version if version else ''}: {'ready' if ready.get(name) else 'NOT ready'}"
              + (f" (engine {engine})" if engine else ""))
    return 0 if all(ready.values()) else 1


def _container_alive(engine: str, name: str):
    import subprocess

    def alive() -> bool:
        out = subprocess.run([engine, "inspect", "-f", "{{.State.Running}}", name],
                             capture_output=True, text=True, check=False)
        return out.returncode == 0 and out.stdout.strip() == "true"

    return alive


def cmd_wait(args) -> int:
    from kit.triton.readiness import NotReady, wait_ready
    from kit.triton.state import read_state

    state = read_state(Path(args.run_dir))
    if state is None:
        print(f"[odk] error: nothing started in {args.run_dir}", file=sys.stderr)
        return 1
    alive = _container_alive(args.engine, args.container) if args.container else (lambda: True)
    try:
        took = wait_ready(state.http_url, state.model_versions(), args.timeout, alive=alive)
    except NotReady as exc:
        print(f"[odk] Triton did not become ready: {exc}", file=sys.stderr)
        return 1
    print(f"[odk] Triton ready in {took:.1f} s", file=sys.stderr)
    return 0


def cmd_check_ports(args) -> int:
    """One error line (exit 1) when a port is taken; silent otherwise."""
    from kit.triton.readiness import port_in_use

    for var, port in _ports(args).named().items():
        if port_in_use(port):
            print(f"[odk] error: port {port} ({var}) is already in use; free it or choose another, "
                  f"e.g. {var}={port + 100}", file=sys.stderr)
            return 1
    return 0


def cmd_reap(args) -> int:
    """Remove what an ended operator left (shm regions and their registration, temporary files)."""
    from kit.triton.reap import reap

    done = reap(args.pid, args.output_dir, args.since, args.grpc_url)
    if done:
        print(f"[odk] removed what the operator (pid {args.pid}) left: {done.files} shared-memory region(s), "
              f"{done.registrations} Triton registration(s), {done.temporaries} temporary file(s)",
              file=sys.stderr)
    return 0


def cmd_reap_shm(args) -> int:
    """Unlink the shared-memory segments of Triton servers and operators that are gone; say how much."""
    from kit.triton.shm import reap_orphans

    freed = reap_orphans()
    if freed.segments:
        print(f"[odk] {freed.line()}", file=sys.stderr)
    return 0


def cmd_models(args) -> int:
    """The model directories of a repository, one per line (what a container Triton will serve)."""
    root = Path(args.models_dir)
    if not root.is_dir():
        print(f"[odk] error: model repository {root} does not exist; set MODELS_DIR", file=sys.stderr)
        return 1
    for entry in sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        print(entry)
    return 0


def cmd_runtimes(args) -> int:
    """The runtimes the repository's models need, one per line (onnx, torch): make triton installs torch
    only when a TorchScript model is there."""
    from kit.triton.repository import TORCH_PLATFORM, read_repository

    try:
        repo = read_repository(args.models_dir)
    except FileNotFoundError:
        return 0
    for platform in sorted({m.platform for m in repo.models}):
        print("torch" if platform == TORCH_PLATFORM else "onnx")
    return 0


def cmd_record_container(args) -> int:
    """Record a started Triton container in --run-dir: the run state has one writer, kit.triton.state."""
    from kit.triton.state import RunState, write_state

    root = Path(args.models_dir)
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    write_state(args.run_dir, RunState(
        mode="container", http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
        models_dir=str(root), models=[f"{n}:" for n in names], engine=args.engine, container=args.container,
        image=args.image))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kit.triton", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve a model repository in the foreground (embedded Triton)")
    p.add_argument("--models-dir", "--model-repository", dest="models_dir", required=True)
    _add_ports(p)
    p.add_argument("--skip-unservable", action="store_true",
                   help="serve the other models when some cannot be")
    p.add_argument("--ort-threads", type=int, default=0, help="onnxruntime intra-op threads (0: all cores)")
    p.add_argument("--log-verbose", type=int, default=0)
    p.add_argument("--allow-client-shm", default=None, help="accepted for tritonserver compatibility")
    p.add_argument("--workspace", type=Path, default=None, help="PyTriton's workspace (a path that does not exist)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("start", help="start the embedded Triton in the background; return when ready")
    p.add_argument("--models-dir", default="local/models")
    _add_ports(p)
    p.add_argument("--run-dir", type=Path, default=default_run_dir())
    p.add_argument("--timeout", type=seconds, default=120.0)
    p.add_argument("--skip-unservable", action="store_true")
    p.set_defaults(func=cmd_start)

    for name, func, text in (
        ("stop", cmd_stop, "stop the embedded Triton started in --run-dir"),
        ("status", cmd_status, "mode, URLs, models and readiness (exit 3: not running)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--run-dir", type=Path, default=default_run_dir())
        p.set_defaults(func=func)

    p = sub.add_parser("wait", help="wait until the Triton recorded in --run-dir and its models are ready")
    p.add_argument("--run-dir", type=Path, default=default_run_dir())
    p.add_argument("--timeout", type=seconds, default=120.0)
    p.add_argument("--engine", default="", help="with --container: fail early when the container stops")
    p.add_argument("--container", default="")
    p.set_defaults(func=cmd_wait)

    p = sub.add_parser("check-ports", help="fail with one line when a Triton port is already taken")
    _add_ports(p)
    p.set_defaults(func=cmd_check_ports)

    p = sub.add_parser("reap", help="remove the shm regions and temporary files an ended operator left")
    p.add_argument("--pid", type=int, default=0, help="the operator's pid (0: temporary files only)")
    p.add_argument("--output-dir", type=Path, default=None)
    p.add_argument("--since", type=float, default=0.0, help="epoch seconds the operator started at")
    p.add_argument("--grpc-url", default="", help="the Triton its regions were registered with")
    p.set_defaults(func=cmd_reap)

    p = sub.add_parser("reap-shm", help="remove /dev/shm segments (psm_*, odk_*) that no living process maps")
    p.set_defaults(func=cmd_reap_shm)
    p = sub.add_parser("record-container", help="record a started Triton container as the run state")
    p.add_argument("--run-dir", type=Path, default=default_run_dir())
    p.add_argument("--models-dir", required=True)
    _add_ports(p)
    for flag in ("--engine", "--container", "--image"):
        p.add_argument(flag, required=True)
    p.set_defaults(func=cmd_record_container)

    p = sub.add_parser("models", help="list the model directories of a repository")
    p.add_argument("--models-dir", default="local/models")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("runtimes", help="the runtimes the repository's models need (onnx, torch)")
    p.add_argument("--models-dir", default="local/models")
    p.set_defaults(func=cmd_runtimes)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
