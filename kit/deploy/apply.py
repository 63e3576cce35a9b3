"""``make deploy PLATFORM=kubernetes``: validate, render, then apply with kubectl.

Cluster objects with ``kubectl apply -f``; MODELS_DIR copied into the models volume through the
models-loader pod (``kubectl cp``); the Workflow with ``kubectl create -f`` (a new run each time). With
``--dry-run`` the commands are printed, none is run. Any failure: one line, exit 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kit.deploy import render
from kit.deploy.objects import LOADER
from kit.deploy.prepare import prepare
from kit.deploy.settings import from_env
from kit.pipeline.deploy import image_warnings
from kit.pipeline.launch import shown
from kit.pipeline.model import PipelineError, params_from
from kit.procs import failure_reason


class KubectlError(Exception):
    """A kubectl step failed; the message is the one line to print."""


@dataclass(frozen=True)
class Kubectl:
    argv: tuple[str, ...]  # kubectl [--context C]
    dry_run: bool

    def run(self, *args: str, what: str) -> str:
        argv = [*self.argv, *args]
        print(f"$ {shown(argv)}", flush=True)
        if self.dry_run:
            return ""
        try:
            # stdin closed: kubectl asks for a user name on a terminal when the kubeconfig has no user, and
            # make deploy would wait there without a word.
            done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900,
                                  stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise KubectlError(f"cannot run {self.argv[0]}: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            raise KubectlError(f"{what}: kubectl gave no answer in 900 s") from exc
        if done.returncode != 0:
            raise KubectlError(f"{what} failed (kubectl exit {done.returncode}): {reason(done)[:300]}")
        return done.stdout


def reason(done: subprocess.CompletedProcess[str]) -> str:
    """Why kubectl failed; when it asked for a password (and got none), say what the kubeconfig lacks."""
    why = failure_reason(done.stderr, done.stdout)
    if "Please enter Username" in done.stdout:
        return f"{why} (kubectl asked for a user name: the context has no user with a token or client " \
               "certificate in the kubeconfig)"
    return why


def log(message: str) -> None:
    print(f"[odk] {message}", file=sys.stderr, flush=True)


def model_dirs(models_dir: Path, wanted: Sequence[str]) -> list[Path]:
    """The model folders to copy: those the pipeline names (all must be there), else every model folder."""
    if not models_dir.is_dir():
        raise PipelineError(f"MODELS_DIR={models_dir} is not a folder; give the Triton model repository")
    if wanted:
        missing = [m for m in wanted if not (models_dir / m / "config.pbtxt").is_file()]
        if missing:
            raise PipelineError(f"model(s) {', '.join(missing)} named by the pipeline are not in MODELS_DIR="
                                f"{models_dir} (no <model>/config.pbtxt)")
        return [models_dir / m for m in wanted]
    found = sorted(p.parent for p in models_dir.glob("*/config.pbtxt"))
    if not found:
        raise PipelineError(f"MODELS_DIR={models_dir} holds no model (no <model>/config.pbtxt)")
    return found


def deploy(args: argparse.Namespace) -> str | None:
    settings = from_env()
    b, folder = prepare(args.pipeline, settings, args.manifests_dir, params=params_from(os.environ),
                        environ=os.environ)
    print(f"rendered and validated {len(b.manifests)} manifest(s) in {folder}", flush=True)
    for warning in image_warnings(b.pipeline):
        print(f"warning: {warning}", flush=True)
    models = model_dirs(args.models_dir, b.triton.models) if b.triton else []
    kubectl = args.kubectl or "kubectl"
    if not args.dry_run and shutil.which(kubectl) is None:
        raise KubectlError(f"kubectl not found ({kubectl}); install kubectl and configure access to the "
                           "cluster (or DRY_RUN=1 to only render)")
    k = Kubectl(argv=(kubectl, *(("--context", args.context) if args.context else ())), dry_run=args.dry_run)
    ns = settings.namespace
    context = f" (context {args.context})" if args.context else ""
    k.run("version", "--request-timeout=20s", what=f"reaching the cluster{context}"
          " with 'kubectl version' (check KUBE_CONTEXT and your kubeconfig)")

    def f(name: str) -> str:
        return str(folder / name)

    k.run("apply", "-f", f(render.NAMESPACE_FILE), "-f", f(render.VOLUMES_FILE),
          what="applying the namespace and volumes")
    if b.triton:
        k.run("apply", "-f", f(render.LOADER_FILE), what="creating the models-loader pod")
        k.run("wait", "-n", ns, "--for=condition=Ready", f"pod/{LOADER}", "--timeout=300s",
              what="waiting for the models-loader pod")
        for model in models:
            k.run("cp", str(model), f"{ns}/{LOADER}:/models/{model.name}", what=f"copying model {model.name}")
        k.run("delete", "-n", ns, f"pod/{LOADER}", "--wait=false", what="deleting the models-loader pod")
        k.run("apply", "-f", f(render.TRITON_FILE), what="applying the Triton Deployment and Service")
    created = k.run("create", "-f", f(render.WORKFLOW_FILE), "-o", "name", what="creating the Workflow")
    if args.dry_run:
        log("DRY_RUN=1: nothing was run")
        return None
    return created.strip().splitlines()[-1].split("/")[-1] if created.strip() else "?"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ
    ap = argparse.ArgumentParser(prog="python -m kit.deploy.apply", description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", type=Path, default=Path(env.get("PIPELINE") or "def/one-operator-pipeline.yml"))
    ap.add_argument("--manifests-dir", type=Path,
                    default=Path(env["MANIFESTS_DIR"]) if env.get("MANIFESTS_DIR") else None)
    ap.add_argument("--models-dir", type=Path, default=Path(env.get("MODELS_DIR") or "local/models"))
    ap.add_argument("--context", default=env.get("KUBE_CONTEXT") or "")
    ap.add_argument("--kubectl", default=env.get("KUBECTL") or "kubectl")
    ap.add_argument("--dry-run", action="store_true", default=env.get("DRY_RUN", "0") == "1")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        name = deploy(args)
    except (PipelineError, KubectlError) as exc:
        for problem in getattr(exc, "problems", ()):
            print(problem)
        log(f"error: {exc}")
        return 1
    if name is not None:
        ns = from_env().namespace
        print(f"workflow: {name}")
        log(f"workflow {name} created in namespace {ns}; follow it with 'kubectl get workflow -n {ns} {name} -w' "
            f"or 'argo watch -n {ns} {name}', logs with 'argo logs -n {ns} {name}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
