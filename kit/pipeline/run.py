"""Run a whole pipeline locally, wired as the platform wires it (``make run-pipeline``).

``python -m kit.pipeline.run PIPELINE --input-dir DIR --output-dir DIR [--runtime auto|host|container]``
Operators run one at a time in topological order. A failed operator stops its dependants; the others
still run; the exit code is 1 naming the failed operator. A summary table ends every run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from kit.paths import ROOT, run_dir
from kit.pipeline import launch, wiring
from kit.pipeline.graph import downstream_of
from kit.pipeline.model import Pipeline, PipelineError, load_pipeline, params_from
from kit.pipeline.outputs import check_outputs, fresh
from kit.pipeline.triton_hint import triton_warning
from kit.triton.reap import reap
from kit.triton.state import default_run_dir, read_state
from kit.warm import client as warm


@dataclass
class Result:
    operator: str
    status: str  # ok | failed | skipped
    seconds: float = 0.0
    detail: str = ""


@dataclass(frozen=True)
class Settings:
    runtime: str  # host | container (resolved)
    engine: str | None
    repo_image: str
    python: Path
    dockerfile: Path
    log_dir: Path
    job_name: str
    warm_socket: Path | None = None  # host runs: the fork server operators start from (kit.warm)


def log(message: str) -> None:
    print(f"[odk] {message}", file=sys.stderr, flush=True)


def image_exists(engine: str, image: str) -> bool:
    return subprocess.run([engine, "image", "inspect", image], capture_output=True, check=False).returncode == 0


def resolve_runtime(pipeline: Pipeline, runtime: str, engine: str | None, repo_image: str) -> str:
    """auto: containers when an engine works and every image is there. A pipeline's commands run on this
    host only when asked (RUNTIME=host), and only for operators built from this repo. Raises PipelineError
    saying what to do otherwise."""
    foreign = [f"{op.name} ({op.image})" for op in pipeline.operators if not launch.is_repo_image(op.image, repo_image)]
    missing: list[str] = []
    if runtime in ("container", "auto") and engine:
        refs = [f"{op.image}:{op.tag}" for op in pipeline.operators]
        missing = [ref for ref in refs if not image_exists(engine, ref)]
        if not missing:
            return "container"
    if runtime == "container":
        if not engine:
            raise PipelineError("RUNTIME=container needs a working container engine (docker or podman); "
                                "start one, or use RUNTIME=host")
        raise PipelineError(f"image(s) not found by {engine}: {', '.join(dict.fromkeys(missing))}; "
                            "build them (make build) or use RUNTIME=host")
    if foreign:
        raise PipelineError(f"operator(s) {', '.join(foreign)} are not built from this repo (IMAGE="
                            f"{repo_image}), so they can only run as containers: build or pull their images "
                            "and use a working container engine")
    if runtime == "auto":
        why = (f"image(s) not found by {engine}: {', '.join(dict.fromkeys(missing))}" if engine
               else "no working container engine")
        raise PipelineError(f"RUNTIME=auto: {why}; build the image (make build), or pass RUNTIME=host to run "
                            "the pipeline's commands on this host as the current user")
    return "host"


def local_triton() -> wiring.Triton:
    """NVIDIA_TRITON_GRPCURI/HTTPURI from the environment, else the Triton that `make triton` started."""
    grpc = os.environ.get("NVIDIA_TRITON_GRPCURI") or None
    http = os.environ.get("NVIDIA_TRITON_HTTPURI") or None
    if grpc or http:  # the caller's own Triton: the state of `make triton` says nothing about it
        return wiring.Triton(grpc=grpc, http=http, models=())
    try:
        state = read_state(default_run_dir())
    except (OSError, ValueError):
        state = None
    if state is None:
        return wiring.Triton(grpc=None, http=None, models=())
    return wiring.Triton(grpc=state.grpc_url, http=f"{state.host}:{state.http_port}",
                         models=tuple(name for name, _ in state.model_versions()))


def command_for(p: wiring.Plan, env: dict[str, str], s: Settings, run_id: str) -> tuple[list[str], dict[str, str]]:
    op = p.operator
    image = f"{op.image}:{op.tag}"
    if s.runtime == "container":
        assert s.engine
        user = f"{os.getuid()}:{os.getgid()}" if hasattr(os, "getuid") else None
        argv = launch.container_argv(s.engine, image, op.command, p, env, f"odk-{op.name}-{run_id}", user)
        return argv, dict(os.environ)
    defaults = launch.dockerfile_defaults(s.dockerfile) if s.dockerfile.is_file() else launch.ImageDefaults()
    argv = launch.host_argv(launch.effective_argv(defaults, op.command), s.python)
    return argv, {**os.environ, **env}


def entrypoint_warnings(pipeline: Pipeline, s: Settings) -> list[str]:
    """A `command` given to an image with an ENTRYPOINT is passed to it as arguments (as on the platform)."""
    if not s.dockerfile.is_file():
        return []
    entrypoint = launch.dockerfile_defaults(s.dockerfile).entrypoint
    return [f"operator '{op.name}': {s.dockerfile.name} has ENTRYPOINT {list(entrypoint)}, so its command "
            f"{list(op.command)} is passed to it as arguments (use CMD in the Dockerfile to let pipelines "
            "replace the command)"
            for op in pipeline.operators
            if entrypoint and op.command and launch.is_repo_image(op.image, s.repo_image)]


def run_operator(p: wiring.Plan, env: dict[str, str], s: Settings, run_id: str) -> tuple[int, str]:
    """Run one operator, its output streamed with an ``[op]`` prefix and kept in LOG_DIR/<op>.log."""
    argv, full_env = command_for(p, env, s, run_id)
    log_path = s.log_dir / f"{p.operator.name}.log"
    last = ""
    started = time.time()
    with log_path.open("w", encoding="utf-8") as log_file:
        proc = start_operator(p.operator.name, argv, full_env, s)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log_file.write(line)
                print(f"[{p.operator.name}] {line}", end="", flush=True)
                last = line.strip() or last
            return proc.wait(), last
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                if s.runtime == "container" and s.engine:
                    subprocess.run([s.engine, "rm", "-f", f"odk-{p.operator.name}-{run_id}"],
                                   capture_output=True, check=False)
            # An operator that exited 0 has unregistered its regions itself: Triton is asked (a gRPC client,
            # ~0.3 s the first time) only about one that failed or was stopped.
            grpc_url = "" if proc.returncode == 0 else env.get("NVIDIA_TRITON_GRPCURI", "")
            for entry in p.outputs:  # a killed operator's shm regions and temporary files
                done = reap(proc.pid if s.runtime == "host" else 0, entry.host, started, grpc_url)
                if done:
                    log(f"{p.operator.name}: removed what it left: {done.files} shared-memory region(s), "
                        f"{done.registrations} Triton registration(s), {done.temporaries} temporary file(s)")


def start_operator(name: str, argv: list[str], env: dict[str, str],
                   s: Settings) -> subprocess.Popen[str] | warm.WarmProcess:
    """A host operator from the fork server when there is one and its command is a ``python`` one, else as
    its own interpreter; the log says which."""
    if s.warm_socket is not None:
        proc = warm.spawn(s.warm_socket, argv, env, ROOT)
        if isinstance(proc, warm.WarmProcess):
            log(f"{name}: {launch.shown(argv)} (warm start: forked by the fork server, pid {proc.pid})")
            return proc
        log(f"{name}: cold start: {proc}")
    log(f"{name}: {launch.shown(argv)}")
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", bufsize=1)


def warm_server(runtime: str, operators: int, stack: contextlib.ExitStack, log_dir: Path) -> Path | None:
    """The fork server host operators start from: the listener's (ODK_WARM_SOCKET), else one for this run,
    stopped with it; None for containers, with ODK_WARM_START=0, for a run of one operator (its imports would
    only move into the server), or when it cannot start (then cold)."""
    if runtime != "host" or not warm.enabled():
        return None
    given = os.environ.get(warm.SOCKET_VARIABLE)
    if given and Path(given).exists():
        return Path(given)
    if operators < 2:
        return None
    try:
        server = stack.enter_context(warm.WarmServer.start(log=log_dir / "warm-server.log"))
    except (warm.WarmError, OSError) as exc:
        log(f"warning: operators start cold: {exc}")
        return None
    return server.socket


def run_pipeline(pipeline: Pipeline, input_dir: Path, output_dir: Path, s: Settings) -> list[Result]:
    if not input_dir.is_dir():
        raise PipelineError(f"INPUT_DIR={input_dir} is not a folder; put the input studies there")
    triton = local_triton()
    if hint := triton_warning(triton):
        log(f"warning: {hint}")
    for model in wiring.missing_models(pipeline, triton):
        log(f"warning: model '{model}' is not served by the running Triton ({', '.join(triton.models)})")
    for warning in entrypoint_warnings(pipeline, s):
        log(f"warning: {warning}")
    order = pipeline.order()
    plans = {name: wiring.plan(pipeline, pipeline.operator(name), input_dir, output_dir) for name in order}
    check_outputs(plans.values(), input_dir, output_dir)  # before any folder is cleared
    s.log_dir.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex
    upstream = pipeline.upstream()
    results: dict[str, Result] = {}
    for name in order:
        if name in results:  # skipped because an upstream operator failed
            continue
        p = plans[name]
        for entry in p.outputs:
            fresh(entry.host)
        env = wiring.operator_env(p, s.runtime == "host", run_id, s.job_name, triton)
        start = time.monotonic()
        try:
            code, last = run_operator(p, env, s, run_id[:8])
        except OSError as exc:
            code, last = 127, f"cannot start: {exc}"
        seconds = time.monotonic() - start
        if code == 0:
            results[name] = Result(name, "ok", seconds, ", ".join(str(e.host) for e in p.outputs))
            continue
        results[name] = Result(name, "failed", seconds, f"exit {code}: {last}"[:160])
        for dependant in sorted(downstream_of(name, upstream), key=order.index):
            results.setdefault(dependant, Result(dependant, "skipped", 0.0, f"'{name}' failed"))
    return [results[name] for name in order]


def summary(results: list[Result]) -> str:
    width = max(len("operator"), *(len(r.operator) for r in results))
    lines = [f"{'operator':<{width}}  {'status':<8}  {'time':>8}  detail"]
    for r in results:
        lines.append(f"{r.operator:<{width}}  {r.status:<8}  {r.seconds:>7.1f}s  {r.detail}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m kit.pipeline.run", description=__doc__.splitlines()[0])
    ap.add_argument("pipeline", type=Path)
    ap.add_argument("--input-dir", type=Path, default=Path("local/input"))
    ap.add_argument("--output-dir", type=Path, default=Path("local/output"))
    ap.add_argument("--runtime", choices=("auto", "host", "container"), default="auto")
    ap.add_argument("--engine", default="", help="a working container engine (empty: none)")
    ap.add_argument("--image", default=os.environ.get("IMAGE") or "clara/simple-operator",
                    help="the image this repo builds (its operators can run on the host)")
    ap.add_argument("--dockerfile", type=Path, default=ROOT / "Dockerfile",
                    help="where the ENTRYPOINT/CMD of IMAGE are read for host runs")
    ap.add_argument("--job-name", default=os.environ.get("JOB_NAME") or launch.DEFAULT_JOB_NAME)
    ap.add_argument("--log-dir", type=Path, default=run_dir("pipeline"))
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="override a pipeline parameter's default")
    return ap.parse_args(argv)


class Interrupted(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the running operator is stopped and cleaned up after."""


def _on_sigterm(_signum: int, _frame: object) -> None:
    raise Interrupted


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _main(args)
    except KeyboardInterrupt as exc:
        name = "SIGTERM" if isinstance(exc, Interrupted) else "SIGINT"
        print(f"[odk] error: interrupted by {name}; the running operator was stopped and its leftovers "
              "removed (its outputs are incomplete)", file=sys.stderr)
        return 143 if isinstance(exc, Interrupted) else 130


def _main(args: argparse.Namespace) -> int:
    try:
        bad = [p for p in args.param if "=" not in p]
        if bad:
            raise PipelineError(f"--param {bad[0]!r}: expected NAME=VALUE")
        overrides = dict(p.split("=", 1) for p in args.param)
        pipeline = load_pipeline(args.pipeline, {**params_from(os.environ), **overrides}, os.environ)
        runtime = resolve_runtime(pipeline, args.runtime, args.engine or None, args.image)
        log(f"pipeline {pipeline.name} ({args.pipeline}): {' -> '.join(pipeline.order())}, runtime {runtime}")
        with contextlib.ExitStack() as stack:
            log_dir = args.log_dir.resolve()
            log_dir.mkdir(parents=True, exist_ok=True)
            settings = Settings(runtime=runtime, engine=args.engine or None, repo_image=args.image,
                                python=Path(sys.executable), dockerfile=args.dockerfile, log_dir=log_dir,
                                job_name=args.job_name,
                                warm_socket=warm_server(runtime, len(pipeline.operators), stack, log_dir))
            results = run_pipeline(pipeline, args.input_dir, args.output_dir, settings)
    except (PipelineError, ValueError) as exc:
        for problem in getattr(exc, "problems", ()):
            print(problem)
        print(f"[odk] error: {exc}", file=sys.stderr)
        return 1
    print(summary(results))
    failed = [r for r in results if r.status == "failed"]
    if failed:
        names = ", ".join(f"'{r.operator}' ({r.detail.split(':')[0]})" for r in failed)
        log(f"error: operator {names} failed; logs in {settings.log_dir}")
        return 1
    log(f"pipeline done: outputs under {args.output_dir}/<operator>/<output-name>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
