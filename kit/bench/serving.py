"""The embedded Triton for the bench: a throwaway repository (the benchmarked model + a no-compute model
of the same signature), free ports, its own run directory; always stopped on the way out."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from kit.bench.model import BenchModel, write_identity_model
from kit.triton.embedded import Handle, start, stop
from kit.triton.readiness import free_ports
from kit.triton.state import Ports


def _ports() -> Ports:
    http, grpc, metrics = free_ports(3)
    return Ports(http=http, grpc=grpc, metrics=metrics)


@contextlib.contextmanager
def embedded_triton(model: BenchModel, work: Path, timeout_s: float = 300.0) -> Iterator[Handle]:
    """Serve ``model`` (linked, not copied) and the transport model; stop the server whatever happens."""
    repo = work / "models"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    (repo / model.name).symlink_to(model.model_dir.resolve(), target_is_directory=True)
    write_identity_model(repo, model)
    run_dir = work / "triton"
    stop(run_dir)  # a server left behind by an interrupted bench
    handle = start(repo, _ports(), run_dir, timeout=timeout_s, address="127.0.0.1")
    try:
        yield handle
    finally:
        stop(run_dir)
