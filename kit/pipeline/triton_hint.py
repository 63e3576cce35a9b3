"""Which Triton the operators of a local pipeline run will use, where that address comes from, and one warning
line when nothing answers there (``make run-pipeline`` and every job of ``make listen``).

The platform's NVIDIA_TRITON_GRPCURI of an operator is the caller's own, else the Triton of ``make triton``
(kit.pipeline.run.local_triton); without either, the operator falls back to its own rule (odk.triton_url:
NVIDIA_CLARA_TRTISURI, TRITON_URL, else localhost:8001). env.list plays no part here: only ``make run-local``
reads it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path

from kit.pipeline.wiring import Triton
from kit.triton.readiness import http_ok
from kit.triton.state import default_run_dir
from odk import ConfigError, triton_url

FAILS = "operators that need Triton will fail"


def tcp_answers(address: str, timeout: float = 1.0) -> bool:
    """Something accepts a TCP connection at host:port."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def source_of(triton: Triton, env: Mapping[str, str], state_dir: Path) -> tuple[str, str]:
    """(the gRPC address the operators will use, where it comes from)."""
    given = [name for name in ("NVIDIA_TRITON_GRPCURI", "NVIDIA_TRITON_HTTPURI") if env.get(name)]
    if given:
        return triton.grpc or "", f"{' / '.join(given)} of this environment"
    if triton.grpc:
        return triton.grpc, f"the Triton of 'make triton', recorded in {state_dir}"
    nothing = (f"no 'make triton' recorded in {state_dir}, NVIDIA_TRITON_GRPCURI not set; env.list is for"
               " 'make run-local' only")
    fallback = next((name for name in ("NVIDIA_CLARA_TRTISURI", "TRITON_URL") if env.get(name, "").strip()), None)
    try:
        address = triton_url({k: v for k, v in env.items() if k != "NVIDIA_TRITON_GRPCURI"})
    except ConfigError as exc:
        return "", f"{exc}; {nothing}"
    return address, (f"{fallback} of this environment: {nothing}" if fallback
                     else f"the operators' default: {nothing}")


def triton_warning(triton: Triton, env: Mapping[str, str] | None = None, state_dir: Path | None = None) -> str | None:
    """One line saying that no Triton answers where the operators will look (and what to do), else None."""
    env = os.environ if env is None else env
    state_dir = default_run_dir() if state_dir is None else state_dir
    address, source = source_of(triton, env, state_dir)
    given = any(env.get(name) for name in ("NVIDIA_TRITON_GRPCURI", "NVIDIA_TRITON_HTTPURI"))
    fix = ("start that server or unset NVIDIA_TRITON_GRPCURI/NVIDIA_TRITON_HTTPURI to use 'make triton'" if given
           else "'make triton-status' says why" if triton.grpc else "start it with 'make triton'")
    if triton.http:
        if http_ok(f"http://{triton.http}/v2/health/ready", timeout=1.0):
            return None
        return f"the Triton at {triton.http} does not answer ({source}): {FAILS}; {fix}"
    if not address:
        return f"no Triton gRPC address ({source}): {FAILS}; set NVIDIA_TRITON_GRPCURI or run 'make triton'"
    if tcp_answers(address):
        return None
    if triton.grpc:
        return f"the Triton at {address} does not answer ({source}): {FAILS}; {fix}"
    return f"no Triton runs at {address} ({source}): {FAILS}; {fix}"
