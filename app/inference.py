"""Talking to Triton: readiness, model description, and batched window inference over gRPC or shm.

System shared memory (tritonclient.utils.shared_memory) carries the window traffic when Triton runs on
this host; plain gRPC otherwise. Regions are always unregistered and unlinked in ``close()``, which the
context manager calls on errors too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from .config import OperatorConfig
from .model import ModelSpec, build_spec
from .shm_region import unlink_region_name

log = logging.getLogger("app")
TRANSIENT = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "INTERNAL: Socket closed")


class TritonUnavailable(RuntimeError):
    """Triton or the model did not become ready in time, or stopped answering."""


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


def _short_reason(exc: InferenceServerException) -> str:
    """A few words for why a request failed, instead of gRPC's long status text."""
    text = exc.message() or str(exc)
    for needle, words in (("Connection refused", "connection refused"), ("Name resolution", "unknown host"),
                          ("DNS resolution failed", "unknown host"), ("Deadline Exceeded", "no answer"),
                          ("Socket closed", "connection closed")):
        if needle.lower() in text.lower():
            return words
    return text.splitlines()[0][:160]


def _not_ready_message(cfg: OperatorConfig, answered: bool, server_up: bool, reason: str) -> str:
    wait = f"{cfg.ready_timeout_s:g} s"
    if not answered:
        return (f"cannot reach Triton at {cfg.triton_url} within {wait} ({reason}); start it with 'make triton'"
                " or fix NVIDIA_TRITON_GRPCURI in env.list")
    if not server_up:
        return f"Triton at {cfg.triton_url} is not ready after {wait}; see 'make triton-status' and its log"
    version = f" version {cfg.model_version}" if cfg.model_version else ""
    return (f"Triton at {cfg.triton_url} serves no ready model '{cfg.model_name}'{version} after {wait};"
            " fix TRITON_MODEL_NAME / TRITON_MODEL_VERSION in env.list or check 'make triton-status'")


def _transient(exc: InferenceServerException) -> bool:
    text = f"{exc.status()} {exc.message()}"
    return any(t in text for t in TRANSIENT)


class TritonSession:
    """A connection to one model on one Triton server, for the lifetime of an operator run."""

    def __init__(self, cfg: OperatorConfig) -> None:
        self.cfg = cfg
        self.client = grpcclient.InferenceServerClient(url=cfg.triton_url)
        self.spec: ModelSpec | None = None
        self.transport = "grpc"
        self._regions: list[tuple[str, shm.SharedMemoryRegion]] = []
        self._batch_capacity = 0

    # -- lifecycle -------------------------------------------------------------------------------
    @classmethod
    def open(cls, cfg: OperatorConfig) -> TritonSession:
        """A ready session: server and model ready, the model described and checked (``spec``), the transport
        chosen (``transport``, shm regions registered). Nothing is left open when a step fails. Use it as a
        context manager (``with TritonSession.open(cfg) as session:``); ``close()`` releases everything."""
        session = cls(cfg)
        try:
            session.wait_ready()
            session.describe_model()
            session.choose_transport()
        except BaseException:
            session.close()
            raise
        return session

    def __enter__(self) -> TritonSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_ready(self, progress_every_s: float = 10.0) -> None:
        """Block until the server and the model are ready, or raise after ``ready_timeout_s``."""
        cfg = self.cfg
        deadline = time.monotonic() + cfg.ready_timeout_s
        next_report = time.monotonic()
        answered = server_up = False
        last_error = "no answer"
        while True:
            try:
                server_up = self.client.is_server_ready()
                answered = True
                if server_up and self.client.is_model_ready(cfg.model_name, cfg.model_version):
                    return
                last_error = "server not ready" if not server_up else f"model '{cfg.model_name}' not ready"
            except InferenceServerException as exc:
                server_up = False
                last_error = _short_reason(exc)
            now = time.monotonic()
            if now >= deadline:
                raise TritonUnavailable(_not_ready_message(cfg, answered, server_up, last_error))
            if now >= next_report:
                log.info("waiting for Triton at %s and model %s (%s)", cfg.triton_url, cfg.model_name, last_error)
                next_report = now + progress_every_s
            time.sleep(0.5)

    def describe_model(self) -> ModelSpec:
        """Fetch metadata + config and check them against what the operator needs."""
        cfg = self.cfg
        try:
            meta = self.client.get_model_metadata(cfg.model_name, cfg.model_version)
            config = self.client.get_model_config(cfg.model_name, cfg.model_version).config
        except InferenceServerException as exc:
            raise TritonUnavailable(f"Triton at {cfg.triton_url} could not describe model '{cfg.model_name}'"
                                    f" ({_short_reason(exc)}); check 'make triton-status'") from None
        self.spec = build_spec(meta, config, cfg)
        return self.spec

    def choose_transport(self) -> str:
        """Pick shm or gRPC (``auto``: shm when Triton is on this host and accepts our region)."""
        assert self.spec is not None, "describe_model() first"
        wanted = self.cfg.transport
        if wanted == "grpc" or (wanted == "auto" and not is_local_address(self.cfg.triton_url)):
            self.transport = "grpc"
            return self.transport
        try:
            self._setup_shm()
            self.transport = "shm"
        except (InferenceServerException, shm.SharedMemoryException) as exc:
            self._release_shm()
            reason = exc.message() if isinstance(exc, InferenceServerException) else str(exc)
            if wanted == "shm":
                raise TritonUnavailable(f"TRITON_TRANSPORT=shm but Triton cannot use this host's shared memory"
                                        f" ({reason}); use TRITON_TRANSPORT=grpc or run on Triton's host") from exc
            log.info("shared memory not usable with Triton at %s (%s); using gRPC", self.cfg.triton_url, reason)
            self.transport = "grpc"
        return self.transport

    def close(self) -> None:
        self._release_shm()
        with contextlib.suppress(Exception):  # closing a broken channel must not hide the real error
            self.client.close()

    # -- shared memory ---------------------------------------------------------------------------
    def batch_capacity(self) -> int:
        assert self.spec is not None
        return self.spec.windows_per_request(self.cfg.batch_size)

    def _nbytes(self, channels: int, batch: int) -> int:
        assert self.spec is not None
        return batch * channels * int(np.prod(self.spec.roi)) * 4

    def _setup_shm(self) -> None:
        assert self.spec is not None
        self._batch_capacity = self.batch_capacity()
        tag = f"odk_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        for kind, channels in (("in", 1), ("out", self.spec.channels)):
            name = f"{tag}_{kind}"
            size = self._nbytes(channels, self._batch_capacity)
            region = shm.create_shared_memory_region(name, "/" + name, size, create_only=True)
            self._regions.append((name, region))
            self.client.register_system_shared_memory(name, "/" + name, size)

    def _release_shm(self) -> None:
        while self._regions:
            name, region = self._regions.pop()
            try:
                self.client.unregister_system_shared_memory(name)
            except Exception as exc:  # the server may be gone; the region is still ours to unlink
                log.debug("unregister %s: %s", name, exc)
            try:
                shm.destroy_shared_memory_region(region)
            except BufferError:
                # A view into the region is still referenced (e.g. by a traceback): unlink the name anyway
                # so nothing is left in /dev/shm; the mapping goes away with the last reference.
                unlink_region_name(region)

    # -- inference -------------------------------------------------------------------------------
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        spec = self.spec
        assert spec is not None
        n = batch.shape[0]
        inp = grpcclient.InferInput(spec.input_name, list(batch.shape), "FP32")
        out = grpcclient.InferRequestedOutput(spec.output_name)
        out_shape = [n, spec.channels, *spec.roi]
        if self.transport == "shm":
            (in_name, in_region), (out_name, out_region) = self._regions
            shm.set_shared_memory_region(in_region, [batch])
            inp.set_shared_memory(in_name, batch.nbytes)
            out.set_shared_memory(out_name, self._nbytes(spec.channels, n))
        else:
            inp.set_data_from_numpy(batch)
        result = self.client.infer(spec.name, [inp], model_version=self.cfg.model_version, outputs=[out],
                                   client_timeout=self.cfg.request_timeout_s)
        if self.transport == "shm":
            return shm.get_contents_as_numpy(out_region, np.float32, out_shape)
        array = result.as_numpy(spec.output_name)
        if array is None:
            raise TritonUnavailable(f"Triton returned no '{spec.output_name}' output")
        return array

    def predictor(self) -> Callable[[np.ndarray], np.ndarray]:
        """A ``predict(batch)`` function for app.sliding, with retries on transient errors.

        With the shm transport the returned array is a view into the session's output region, not a copy: it
        is valid until the next ``predict`` call (which overwrites the region) or ``close()``. Copy it to keep
        it; app.sliding blends each result into its accumulator before asking for the next batch.
        """

        def predict(batch: np.ndarray) -> np.ndarray:
            delay = 0.5
            for attempt in range(self.cfg.retries + 1):
                try:
                    return self._infer(batch)
                except InferenceServerException as exc:
                    if attempt >= self.cfg.retries or not _transient(exc):
                        raise
                    log.warning("Triton request failed (%s); retry %d/%d in %.1f s", exc.message(),
                                attempt + 1, self.cfg.retries, delay)
                    time.sleep(delay)
                    delay *= 2
            raise AssertionError("unreachable")

        return predict
