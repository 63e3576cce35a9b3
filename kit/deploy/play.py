"""``make run-pipeline RUNTIME=kube``: play the rendered container specs with ``podman kube play``.

The bundle is rendered and validated as for `make deploy`; then Triton's pod (when the pipeline uses it,
with KUBE_TRITON_IMAGE, e.g. the CPU image of scripts/triton-cpu) and each operator's pod in DAG order,
each taken down after it ran. Outputs land in OUTPUT_DIR/<operator>/<output> like RUNTIME=host.
``python -m kit.deploy.play PIPELINE --input-dir DIR --output-dir DIR --models-dir DIR``
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from kit.deploy import podspec, render
from kit.deploy.prepare import BundleError, prepare
from kit.deploy.settings import dns_name, from_env
from kit.paths import ROOT
from kit.pipeline.model import PipelineError, params_from
from kit.pipeline.outputs import check_output_folder, fresh
from kit.pipeline.run import Result, summary
from kit.procs import failure_reason
from kit.triton.readiness import NotReady, free_ports, wait_ready

KUBE_NETWORK = "podman-default-kube-network"


def log(message: str) -> None:
    print(f"[odk] {message}", file=sys.stderr, flush=True)


def podman(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, check=False, timeout=timeout)
    if check and done.returncode != 0:
        reason = failure_reason(done.stderr, done.stdout)
        raise PipelineError(f"podman {' '.join(args[:2])} failed: {reason[:300]}")
    return done


class Player:
    """Plays pods one file at a time; every pod played is taken down again (``close``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.played: list[Path] = []
        self.scratch: list[Path] = []
        self.networks_before = set(podman("network", "ls", "--format", "{{.Name}}", check=False).stdout.split())
        self.logs: dict[str, str] = {}  # pod -> container whose log is kept when the pod is taken down

    def play(self, pod: dict[str, Any]) -> Path:
        path = self.folder / f"{pod['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(pod, sort_keys=False), encoding="utf-8")
        self.played.append(path)
        podman("kube", "play", "--replace", str(path))
        return path

    def down(self, path: Path) -> None:
        if container := self.logs.get(path.stem):
            logs = podman("logs", container, check=False)
            (self.folder / f"{path.stem}.log").write_text(logs.stdout + logs.stderr, encoding="utf-8")
        podman("kube", "down", str(path), check=False)
        if path in self.played:
            self.played.remove(path)

    def forget_network(self) -> None:
        """podman kube play creates its default network for pods off the host network; remove it when this
        run created it (``network rm`` without force refuses while anyone else uses it)."""
        if KUBE_NETWORK not in self.networks_before:
            podman("network", "rm", KUBE_NETWORK, check=False)

    def close(self) -> None:
        for path in reversed(list(self.played)):
            self.down(path)
        for folder in self.scratch:
            shutil.rmtree(folder, ignore_errors=True)
        self.forget_network()


def start_triton(player: Player, b: render.Bundle, models_dir: Path, short: str, timeout: float) -> tuple[str, str]:
    mf = b.manifest(render.TRITON_FILE)
    assert mf is not None and b.triton is not None
    deployment = next(o for o in mf.objects if o["kind"] == "Deployment")
    http, grpc, metrics = free_ports(3)
    name = f"triton-{short}"
    container = f"{name}-{deployment['spec']['template']['spec']['containers'][0]['name']}"
    scratch = Path(tempfile.mkdtemp(prefix=f"odk-{name}-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    player.scratch.append(scratch)
    for v in deployment["spec"]["template"]["spec"]["volumes"]:
        if "emptyDir" in v:
            (scratch / v["name"]).mkdir(mode=0o1777)
            (scratch / v["name"]).chmod(0o1777)
    ports = {"http": http, "grpc": grpc, "metrics": metrics}
    player.play(podspec.triton_pod(deployment, name, models_dir, ports, scratch))
    player.logs[name] = container

    def alive() -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", container, check=False).stdout.strip()
        return state == "true"

    try:
        took = wait_ready(f"http://127.0.0.1:{http}", [(m, None) for m in b.triton.models], timeout, alive)
    except NotReady as exc:
        tail = podman("logs", "--tail", "5", container, check=False)
        raise PipelineError(f"Triton pod {name} ({b.triton.image}) not ready: {exc}; its log ends: "
                            f"{' | '.join((tail.stdout + tail.stderr).splitlines()[-3:])}") from exc
    log(f"Triton pod {name} ready in {took:.1f} s (gRPC 127.0.0.1:{grpc})")
    return f"127.0.0.1:{grpc}", f"127.0.0.1:{http}"


def run_operator(player: Player, pod: dict[str, Any], log_dir: Path) -> tuple[int, str]:
    name = pod["metadata"]["name"]
    container = f"{name}-{pod['spec']['containers'][0]['name']}"
    path = player.play(pod)
    try:
        code_text = podman("wait", container, timeout=3600).stdout.strip()
        logs = podman("logs", container, check=False)
        text = logs.stdout + logs.stderr
        (log_dir / f"{pod['spec']['containers'][0]['name']}.log").write_text(text, encoding="utf-8")
        for line in text.splitlines():
            print(f"[{pod['spec']['containers'][0]['name']}] {line}", flush=True)
        last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
        return int(code_text or 1), last
    finally:
        player.down(path)


def image_uid(image: str) -> int | None:
    """The numeric non-root user an image declares (``USER 10002:10002``), else None."""
    user = podman("image", "inspect", "--format", "{{.Config.User}}", image, check=False).stdout.strip()
    uid = user.split(":")[0]
    return int(uid) if uid.isdigit() and int(uid) != 0 else None


def require_images(b: render.Bundle) -> None:
    """Every image is here already (nothing is pulled: imagePullPolicy IfNotPresent, and no registry)."""
    images = [f"{op.image}:{op.tag}" for op in b.pipeline.operators]
    missing = [i for i in dict.fromkeys(images) if podman("image", "exists", i, check=False).returncode != 0]
    if missing:
        raise PipelineError(f"image(s) not found by podman: {', '.join(missing)}; build them (make build) "
                            "or pull them first")
    if b.triton and podman("image", "exists", b.triton.image, check=False).returncode != 0:
        raise PipelineError(f"Triton image {b.triton.image} not found by podman; build the CPU one "
                            "(scripts/triton-cpu/build.sh) and set KUBE_TRITON_IMAGE to it, or pull a Triton image")


def play(args: argparse.Namespace) -> list[Result]:
    settings = from_env()
    if args.triton_image:
        settings = dataclasses.replace(settings, triton_image=args.triton_image)
        if "KUBE_TRITON_UID" not in os.environ and (uid := image_uid(args.triton_image)):
            settings = dataclasses.replace(settings, triton_uid=uid)  # the image's own user (its home, caches)
    short = uuid.uuid4().hex[:8]
    log_dir = args.log_dir.resolve()
    b, folder = prepare(args.pipeline, settings, log_dir / "manifests", params=params_from(os.environ),
                        environ=os.environ)
    if not args.input_dir.is_dir():
        raise PipelineError(f"INPUT_DIR={args.input_dir} is not a folder; put the input studies there")
    wf = b.manifest(render.WORKFLOW_FILE).objects[0]  # type: ignore[union-attr]
    require_images(b)
    templates = {t["name"]: t for t in wf["spec"]["templates"]}
    run = f"{dns_name(b.pipeline.name, 40)}-{short}"
    values = {podspec.RUN: run, "{{workflow.uid}}": str(uuid.uuid4()), podspec.PAYLOAD: str(args.input_dir)}
    user = (os.getuid(), os.getgid()) if hasattr(os, "getuid") else None
    pods_dir = log_dir / "pods"
    pods_dir.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    with ExitStack() as stack:
        player = Player(pods_dir)
        stack.callback(player.close)
        grpc = http = None
        if b.triton:
            grpc, http = start_triton(player, b, args.models_dir, short, args.triton_timeout)
        failed: str | None = None
        for op_name in b.pipeline.order():
            task = dns_name(op_name)
            if failed:
                results.append(Result(op_name, "skipped", 0.0, f"'{failed}' failed"))
                continue
            pod, outputs = podspec.operator_pod(templates[task], f"{task}-{short}", args.input_dir, args.output_dir,
                                                run, values, settings.namespace, grpc, http, user)
            for out in outputs:  # the same rules as RUNTIME=host/container: only the kit's own folders are emptied
                check_output_folder(out, f"operator '{op_name}'", args.input_dir, args.output_dir)
                fresh(out)
            log(f"{op_name}: podman kube play {pods_dir / (pod['metadata']['name'] + '.yaml')}")
            start = time.monotonic()
            code, last = run_operator(player, pod, log_dir)
            seconds = time.monotonic() - start
            if code == 0:
                results.append(Result(op_name, "ok", seconds, ", ".join(str(o) for o in outputs)))
            else:
                results.append(Result(op_name, "failed", seconds, f"exit {code}: {last}"[:160]))
                failed = op_name
    log(f"manifests in {folder}; pods in {pods_dir}; all taken down")
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ
    ap = argparse.ArgumentParser(prog="python -m kit.deploy.play", description=__doc__.splitlines()[0])
    ap.add_argument("pipeline", type=Path)
    ap.add_argument("--input-dir", type=Path, default=Path("local/input"))
    ap.add_argument("--output-dir", type=Path, default=Path("local/output"))
    ap.add_argument("--models-dir", type=Path, default=Path(env.get("MODELS_DIR") or "local/models"))
    ap.add_argument("--triton-image", default=env.get("KUBE_TRITON_IMAGE") or "")
    ap.add_argument("--triton-timeout", type=float, default=float(env.get("TRITON_READY_TIMEOUT") or 180))
    ap.add_argument("--log-dir", type=Path, default=Path(env.get("ODK_RUN_DIR") or ROOT / ".run") / "kube-play")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = play(args)
    except (PipelineError, BundleError, ValueError, subprocess.TimeoutExpired) as exc:
        for problem in getattr(exc, "problems", ()):
            print(problem)
        log(f"error: {exc}")
        return 1
    print(summary(results))
    failed = [r for r in results if r.status == "failed"]
    if failed:
        log(f"error: operator '{failed[0].operator}' failed ({failed[0].detail.split(':')[0]}); logs in {args.log_dir}")
        return 1
    log(f"pipeline done: outputs under {args.output_dir}/<operator>/<output-name>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
