"""Talking to Triton: readiness, model description, and batched window inference over gRPC or shm.

System shared memory (app.shm_regions) carries the window traffic when Triton runs on this host; plain
gRPC otherwise. Every call is bounded by a deadline the operator enforces itself (app.deadline): a call
that does not come back drops the connection. Failures of Triton are run-level (TritonUnavailable): no
other study could succeed either.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from . import stopping
from .config import OperatorConfig
from .deadline import DeadlineExpired, bounded
from .errors import TritonUnavailable
from .model import ModelSpec, build_spec, served_engine
from .shm_regions import Regions
from .triton_text import is_local_address, not_ready_message, short_reason, unknown_model_message

log = logging.getLogger("app")
# Retried with backoff: the server unreachable or busy, a request the server cancelled (the operator's own
# stop is checked before each try), or the model (still or again) not loaded, as while Triton restarts.
# After the retries each of them stops the run.
TRANSIENT = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED",
             "INTERNAL: Socket closed", "Request for unknown model", "has no available versions")


T = TypeVar("T")
GRACE_S = 2.0  # on top of gRPC's own deadline, before the operator stops waiting itself
CLEANUP_TIMEOUT_S = 5.0  # at most this per clean-up call (unregistering regions, closing)
IN_USE_WAIT_S = 30.0  # at most this for a request in flight to release the regions
SHM_LOST = "Unable to find shared memory region"  # Triton restarted: our regions are unknown to it
# Triton has no model (or version) of that name: "Request for unknown model: 'x' is not found"; one that is still
# loading or unloading says "... has no available versions" instead.
UNKNOWN_MODEL = ("Request for unknown model", "is not found")
# A ready server that keeps saying it does not know the model is answered after this long (at most a quarter of
# TRITON_READY_TIMEOUT), not after the whole wait: a server that is starting loads its models within seconds.
UNKNOWN_MODEL_GRACE_S = 30.0
__all__ = ["TritonSession", "TritonUnavailable", "is_local_address"]


def _transient(exc: Exception) -> bool:
    if isinstance(exc, DeadlineExpired):
        return True
    if not isinstance(exc, InferenceServerException):
        return False
    text = f"{exc.status()} {exc.message()}"
    return any(t in text for t in TRANSIENT)


class TritonSession:
    """A connection to one model on one Triton server, for the lifetime of an operator run."""

    def __init__(self, cfg: OperatorConfig) -> None:
        self.cfg = cfg
        self.client = grpcclient.InferenceServerClient(url=cfg.triton_url)
        self.spec: ModelSpec | None = None
        self.engine = ""  # what runs the model, from its served config (describe_model)
        self.transport = "grpc"
        self._regions = Regions()
        self._answering = True  # False once a call was abandoned at its deadline: no clean-up calls then

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

    def _call(self, what: str, fn: Callable[[float], T], timeout_s: float, interruptible: bool = True) -> T:
        """``fn(grpc_timeout)`` under the operator's own deadline; a call that does not return in time
        leaves its connection behind (a new one is opened for the next call)."""
        try:
            return bounded(lambda: fn(timeout_s), timeout_s + GRACE_S, what, interruptible)
        except DeadlineExpired:
            self._reconnect()
            raise

    def _reconnect(self) -> None:
        old = self.client
        self.client = grpcclient.InferenceServerClient(url=self.cfg.triton_url)
        self._answering = False
        # Closing a channel with a stuck call can block as well: do it in the background.
        with contextlib.suppress(Exception):
            bounded(old.close, 0.1, "close", interruptible=False)

    def wait_ready(self, progress_every_s: float = 10.0) -> None:
        """Block until the server and the model are ready, or raise after ``ready_timeout_s``."""
        cfg = self.cfg
        deadline = time.monotonic() + cfg.ready_timeout_s
        next_report = time.monotonic()
        answered = server_up = False
        unknown_since: float | None = None  # since when the ready server has said it does not know the model
        last_error = "no answer"
        while True:
            probe_s = max(0.5, min(5.0, deadline - time.monotonic()))
            try:
                server_up = self._call("ready", lambda t: self.client.is_server_ready(client_timeout=t), probe_s)
                answered = True
                if server_up and self._call("ready", lambda t: self.client.is_model_ready(
                        cfg.model_name, cfg.model_version, client_timeout=t), probe_s):
                    self._answering = True
                    return
                last_error = "server not ready" if not server_up else f"model '{cfg.model_name}' not ready"
            except (InferenceServerException, DeadlineExpired) as exc:
                server_up = False
                last_error = short_reason(exc)
            now = time.monotonic()
            if server_up and self._unknown_model(probe_s):
                unknown_since = unknown_since if unknown_since is not None else now
                if now - unknown_since >= min(UNKNOWN_MODEL_GRACE_S, cfg.ready_timeout_s / 4):
                    raise TritonUnavailable(unknown_model_message(cfg))
            else:
                unknown_since = None
            if now >= deadline:
                raise TritonUnavailable(not_ready_message(cfg, answered, server_up, last_error))
            if now >= next_report:
                log.info("waiting for Triton at %s and model %s (%s)", cfg.triton_url, cfg.model_name, last_error)
                next_report = now + progress_every_s
            if stopping.wait(0.5):
                stopping.check()

    def _unknown_model(self, timeout_s: float) -> bool:
        """True when the server says it has no model of that name at all (not merely one still loading)."""
        try:
            self._call("metadata", lambda t: self.client.get_model_metadata(
                self.cfg.model_name, self.cfg.model_version, client_timeout=t), timeout_s)
        except InferenceServerException as exc:
            return all(part in exc.message() for part in UNKNOWN_MODEL)
        except DeadlineExpired:
            return False
        return False

    def describe_model(self) -> ModelSpec:
        """Fetch metadata + config and check them against what the operator needs."""
        cfg = self.cfg
        timeout = min(cfg.request_timeout_s, 30.0)
        try:
            meta = self._call("metadata", lambda t: self.client.get_model_metadata(
                cfg.model_name, cfg.model_version, client_timeout=t), timeout)
            config = self._call("config", lambda t: self.client.get_model_config(
                cfg.model_name, cfg.model_version, client_timeout=t), timeout).config
        except (InferenceServerException, DeadlineExpired) as exc:
            raise TritonUnavailable(f"Triton at {cfg.triton_url} could not describe model '{cfg.model_name}'"
                                    f" ({short_reason(exc)}); check 'make triton-status'") from None
        self.spec = build_spec(meta, config, cfg)
        self.engine = served_engine(config)
        return self.spec

    def choose_transport(self) -> str:
        """Pick shm or gRPC (``auto``: shm when Triton is on this host and accepts our region)."""
        assert self.spec is not None, "describe_model() first"
        wanted = self.cfg.transport
        if wanted == "grpc" or (wanted == "auto" and not is_local_address(self.cfg.triton_url)):
            self.transport = "grpc"
            return self.transport
        try:
            batch = self.batch_capacity()
            self._regions.create({"in": self._nbytes(1, batch), "out": self._nbytes(self.spec.channels, batch)})
            self._register_regions()
            self.transport = "shm"
            self._forget_orphans()
        except (InferenceServerException, DeadlineExpired, shm.SharedMemoryException) as exc:
            self._release_shm()
            reason = exc.message() if isinstance(exc, InferenceServerException) else str(exc)
            if wanted == "shm":
                raise TritonUnavailable(f"TRITON_TRANSPORT=shm but Triton cannot use this host's shared memory"
                                        f" ({reason}); use TRITON_TRANSPORT=grpc or run on Triton's host") from exc
            log.info("shared memory not usable with Triton at %s (%s); using gRPC", self.cfg.triton_url, reason)
            self.transport = "grpc"
        return self.transport

    def close(self) -> None:
        """Unregister and unlink the regions and close the connection, each step bounded in time."""
        self._release_shm()
        with contextlib.suppress(Exception):  # closing a broken channel must not hide the real error
            bounded(self.client.close, CLEANUP_TIMEOUT_S, "close", interruptible=False)

    # -- shared memory ---------------------------------------------------------------------------
    def batch_capacity(self) -> int:
        assert self.spec is not None
        return self.spec.windows_per_request(self.cfg.batch_size)

    def _nbytes(self, channels: int, batch: int) -> int:
        assert self.spec is not None
        return batch * channels * int(np.prod(self.spec.roi)) * 4

    def _register_regions(self) -> None:
        timeout = min(self.cfg.request_timeout_s, 30.0)
        self._regions.register(lambda name, key, size: self._call(
            "register", lambda t: self.client.register_system_shared_memory(name, key, size, client_timeout=t),
            timeout))

    def _forget_orphans(self) -> None:
        """Unregister regions that killed operators (SIGKILL) left registered in Triton: named like ours,
        their /dev/shm file gone. Triton shares this /dev/shm (our own region works), so they are dead."""
        timeout = min(self.cfg.request_timeout_s, CLEANUP_TIMEOUT_S)
        try:
            status = self._call("status", lambda t: self.client.get_system_shared_memory_status(client_timeout=t),
                                timeout)
            for region in status.regions.values():
                if region.name.startswith("odk_") and region.key.startswith("/odk_") and \
                        not (Path("/dev/shm") / region.key[1:]).exists():
                    self._call("unregister", lambda t, n=region.name: self.client.unregister_system_shared_memory(
                        n, client_timeout=t), timeout)
                    log.info("unregistered shared-memory region %s, left in Triton by an operator that was killed",
                             region.name)
        except (InferenceServerException, DeadlineExpired) as exc:
            log.debug("looking for regions left by killed operators: %s", exc)

    def _release_shm(self) -> None:
        if not self._answering:
            self._regions.release(None)
            return
        timeout = min(self.cfg.request_timeout_s, CLEANUP_TIMEOUT_S)
        # A request abandoned by a stop still holds the regions until Triton finishes it: wait for that,
        # as long as a request may take (at most IN_USE_WAIT_S).
        in_use_until = time.monotonic() + min(self.cfg.request_timeout_s, IN_USE_WAIT_S)

        def unregister(name: str) -> None:
            while self._answering:  # a call abandoned at its deadline: the others would wait in vain
                try:
                    return self._call("unregister", lambda t: self.client.unregister_system_shared_memory(
                        name, client_timeout=t), timeout, interruptible=False)
                except InferenceServerException as exc:
                    if "in use" not in str(exc) or time.monotonic() >= in_use_until:
                        raise
                    time.sleep(0.2)

        self._regions.release(unregister)

    # -- inference -------------------------------------------------------------------------------
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        spec = self.spec
        assert spec is not None
        n = batch.shape[0]
        inp = grpcclient.InferInput(spec.input_name, list(batch.shape), "FP32")
        out = grpcclient.InferRequestedOutput(spec.output_name)
        out_shape = [n, spec.channels, *spec.roi]
        if self.transport == "shm":
            self._regions.write(0, batch)
            inp.set_shared_memory(self._regions.handle(0)[0], batch.nbytes)
            out.set_shared_memory(self._regions.handle(1)[0], self._nbytes(spec.channels, n))
        else:
            inp.set_data_from_numpy(batch)
        result = self._call("infer", lambda t: self.client.infer(
            spec.name, [inp], model_version=self.cfg.model_version, outputs=[out], client_timeout=t),
            self.cfg.request_timeout_s)
        self._answering = True
        if self.transport == "shm":
            return self._regions.read(1, out_shape)
        array = result.as_numpy(spec.output_name)
        if array is None:
            raise TritonUnavailable(f"Triton returned no '{spec.output_name}' output")
        return array

    def _gone(self, exc: Exception, retried: int) -> TritonUnavailable:
        cfg = self.cfg
        if isinstance(exc, DeadlineExpired) or "Deadline Exceeded" in str(exc):
            what = f"did not answer within TRITON_REQUEST_TIMEOUT={cfg.request_timeout_s:g} s"
        else:
            what = f"failed the request ({short_reason(exc)})"
        tries = f" (after {retried} retries)" if retried else ""
        return TritonUnavailable(f"Triton at {cfg.triton_url} {what}{tries}; the run stops. Check that it runs"
                                 f" and serves '{cfg.model_name}' ('make triton-status'), then run again")

    def predictor(self) -> Callable[[np.ndarray], np.ndarray]:
        """A ``predict(batch)`` function for app.sliding: transient errors retried with backoff, shm
        regions registered again after a Triton restart; TritonUnavailable once Triton is gone.

        With the shm transport the returned array is a view into the session's output region, not a copy: it
        is valid until the next ``predict`` call (which overwrites the region) or ``close()``. Copy it to keep
        it; app.sliding blends each result into its accumulator before asking for the next batch.
        """

        def predict(batch: np.ndarray) -> np.ndarray:
            delay = 0.5
            reregistered = False
            attempt = 0
            while True:
                try:
                    stopping.check()
                    return self._infer(batch)
                except (InferenceServerException, DeadlineExpired) as exc:
                    if self.transport == "shm" and SHM_LOST in str(exc) and not reregistered:
                        log.warning("Triton no longer knows the shared-memory regions (restarted?); registering"
                                    " them again")
                        reregistered = True
                        try:
                            self._register_regions()
                        except (InferenceServerException, DeadlineExpired) as again:
                            raise self._gone(again, attempt) from None
                        continue
                    if attempt >= self.cfg.retries or not _transient(exc):
                        raise self._gone(exc, attempt) from None
                    attempt += 1
                    log.warning("Triton request failed (%s); retry %d/%d in %.1f s", short_reason(exc),
                                attempt, self.cfg.retries, delay)
                    if stopping.wait(delay):
                        stopping.check()
                    delay *= 2

        return predict
