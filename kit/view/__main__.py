"""``python -m kit.view serve|stop|status``: the results viewer behind ``make view`` / ``make view-stop``."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from pathlib import Path

from kit.paths import run_dir

from . import state
from .api import overview
from .server import NIIVUE, ViewConfig, ViewServer


def fail(message: str) -> int:
    print(f"[odk] error: {message}", file=sys.stderr, flush=True)
    return 1


def say(message: str) -> None:
    print(f"[odk] {message}", file=sys.stderr, flush=True)


def default_run_dir() -> Path:
    return run_dir()


def serve(args: argparse.Namespace) -> int:
    view_dir = args.run_dir / "view"
    running = state.recorded_pid(view_dir)
    if running and running != os.getpid() and state.is_viewer(running):
        url = state.read(view_dir).get("url", "?")
        return fail(f"a viewer is already running at {url} (pid {running}); open it, or run 'make view-stop' first")
    if not args.output_dir.is_dir():
        return fail(f"OUTPUT_DIR '{args.output_dir}' is not a folder; run 'make demo' first or set OUTPUT_DIR "
                    "to a results folder")
    if not NIIVUE.is_file():
        return fail(f"NiiVue is not installed ({NIIVUE} missing); run scripts/setup-viewer.sh")
    cfg = ViewConfig(output_dir=args.output_dir.resolve(), input_dir=args.input_dir.resolve() if args.input_dir
                     else None, run_dir=args.run_dir.resolve())
    try:
        server = ViewServer((args.host, args.port), cfg, args.allow_host)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return fail(f"port {args.port} on {args.host} is taken (another program, or a viewer started "
                        "elsewhere); set VIEW_PORT to a free port, or stop what holds it ('make view-stop')")
        return fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    url = f"http://{args.host}:{server.server_address[1]}/"
    state.write(view_dir, {"pid": str(os.getpid()), "url": url, "output_dir": str(cfg.output_dir),
                           "input_dir": str(cfg.input_dir or "")})

    def terminate(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)  # make view-stop
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C, also where it was inherited as ignored
    for problem in overview(cfg, cfg.source("out"))["problems"]:  # type: ignore[arg-type]
        say(f"warning: {problem}")
    print(f"[odk] results viewer of {cfg.output_dir}: {url}  (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        state.clear(view_dir, os.getpid())
    say("viewer stopped")
    return 0


def stop(args: argparse.Namespace) -> int:
    say(state.stop(args.run_dir / "view"))
    return 0


def status(args: argparse.Namespace) -> int:
    view_dir = args.run_dir / "view"
    pid = state.recorded_pid(view_dir)
    if pid and state.is_viewer(pid):
        values = state.read(view_dir)
        print(f"view: running at {values.get('url', '?')} (pid {pid}), results {values.get('output_dir', '?')}")
        return 0
    print("view: not running; start it with 'make view'")
    return 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m kit.view", description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", type=Path, default=default_run_dir())
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve the results viewer until Ctrl-C")
    s.add_argument("--output-dir", type=Path, default=Path("local/output"))
    s.add_argument("--input-dir", type=Path, default=Path("local/input"))
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8090)
    s.add_argument("--allow-host", default="", help="more Host names it answers (VIEW_HOST), comma separated")
    sub.add_parser("stop", help="stop the viewer recorded in the run folder")
    sub.add_parser("status", help="is a viewer running, and where")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return {"serve": serve, "stop": stop, "status": status}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
