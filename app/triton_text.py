"""Words about Triton for log lines: is an address this machine, why a request failed, why not ready."""

from __future__ import annotations

import contextlib
import ipaddress
import socket

from tritonclient.utils import InferenceServerException

from .config import OperatorConfig
from .deadline import DeadlineExpired


def is_local_address(url: str) -> bool:
    """True when ``host:port`` names this machine (loopback or one of its own addresses)."""
    host = url.rsplit(":", 1)[0].strip("[]") if ":" in url else url
    try:
        addrs = {ai[4][0] for ai in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    local = {"127.0.0.1", "::1"}
    with contextlib.suppress(OSError):
        local |= {ai[4][0] for ai in socket.getaddrinfo(socket.gethostname(), None)}
    return any(ipaddress.ip_address(a.split("%")[0]).is_loopback or a in local for a in addrs)


def short_reason(exc: Exception) -> str:
    """A few words for why a request failed, instead of gRPC's long status text."""
    if isinstance(exc, DeadlineExpired):
        return "no answer"
    text = (exc.message() if isinstance(exc, InferenceServerException) else None) or str(exc)
    for needle, words in (("Connection refused", "connection refused"), ("Name resolution", "unknown host"),
                          ("DNS resolution failed", "unknown host"), ("Deadline Exceeded", "no answer"),
                          ("Socket closed", "connection closed")):
        if needle.lower() in text.lower():
            return words
    return text.splitlines()[0][:160]


def not_ready_message(cfg: OperatorConfig, answered: bool, server_up: bool, reason: str) -> str:
    wait = f"{cfg.ready_timeout_s:g} s"
    if not answered:
        return (f"cannot reach Triton at {cfg.triton_url} within {wait} ({reason}); start it with 'make triton'"
                " or fix NVIDIA_TRITON_GRPCURI in env.list")
    if not server_up:
        return f"Triton at {cfg.triton_url} is not ready after {wait}; see 'make triton-status' and its log"
    version = f" version {cfg.model_version}" if cfg.model_version else ""
    return (f"Triton at {cfg.triton_url} serves no ready model '{cfg.model_name}'{version} after {wait};"
            " fix TRITON_MODEL_NAME / TRITON_MODEL_VERSION in env.list or check 'make triton-status'")


def unknown_model_message(cfg: OperatorConfig) -> str:
    version = f" (version {cfg.model_version})" if cfg.model_version else ""
    return (f"Triton at {cfg.triton_url} is ready but has no model '{cfg.model_name}'{version}; 'make triton-status'"
            " lists the models it serves: fix TRITON_MODEL_NAME / TRITON_MODEL_VERSION, or serve that model"
            " (MODELS_DIR)")
