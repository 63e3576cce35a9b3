"""Talking to Triton: readiness, model description, and batched inference over gRPC or shared memory.

:class:`TritonSession` is one connection to one model for the lifetime of an operator run. Every call runs
under the operator's own deadline (grpcio's blocking call can wait past gRPC's own deadline), transient
errors are retried with backoff, shared-memory regions are registered again after a Triton restart, and
everything is released on close, also after a signal. Nothing here knows what the model computes: the
operator says what it sends (``predict(batch)``), and reads what comes back.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from . import stopping
from .config import OperatorConfig
from .errors import TritonUnavailable
from .model import ModelSpec, build_spec, served_engine

log = logging.getLogger("odk")

T = TypeVar("T")


class DeadlineExpired(TimeoutError):
    """The call did not return in time (it may still be blocked in its thread, abandoned)."""


def bounded(fn: Callable[[], T], timeout_s: float, what: str, interruptible: bool = True) -> T:
    """``fn()``, or DeadlineExpired after ``timeout_s`` seconds. Exceptions of ``fn`` pass through.

    A stop request (odk.stopping) ends the wait early with Interrupted, unless ``interruptible`` is
    False (clean-up calls, which run because of a stop).
    """
    outcome: dict[str, object] = {}
    done = threading.Event()

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=target, name=f"odk-{what}", daemon=True)
    worker.start()
    deadline = time.monotonic() + timeout_s
    while not done.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
        if interruptible:
            stopping.check()
        if time.monotonic() >= deadline:
            raise DeadlineExpired(f"{what}: no answer within {timeout_s:g} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


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


PRIVATE_HANDLE = "_mpsm_handle"


class PrivateApiChanged(RuntimeError):
    """A pinned library no longer has the private attribute this module relies on."""


def unlink_region_name(region: object) -> None:
    """Remove a system shared-memory region's name from /dev/shm; the mapping lives on until its last view goes."""
    handle = getattr(region, PRIVATE_HANDLE, None)
    if handle is None or not callable(getattr(handle, "unlink", None)):
        raise PrivateApiChanged(f"tritonclient's SharedMemoryRegion has no {PRIVATE_HANDLE}.unlink() any more;"
                                " update odk/triton.py for this tritonclient version")
    handle.unlink()


Register = Callable[[str, str, int], None]
Unregister = Callable[[str], None]


class Regions:
    def __init__(self) -> None:
        self.regions: list[tuple[str, int, shm.SharedMemoryRegion]] = []  # (name, size, handle)

    def create(self, sizes: dict[str, int]) -> None:
        tag = f"odk_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        for kind, size in sizes.items():
            name = f"{tag}_{kind}"
            self.regions.append((name, size, shm.create_shared_memory_region(name, "/" + name, size,
                                                                            create_only=True)))

    def register(self, register: Register) -> None:
        for name, size, _handle in self.regions:
            register(name, "/" + name, size)

    def handle(self, index: int) -> tuple[str, shm.SharedMemoryRegion]:
        name, _size, handle = self.regions[index]
        return name, handle

    def write(self, index: int, array: np.ndarray) -> None:
        shm.set_shared_memory_region(self.regions[index][2], [array])

    def read(self, index: int, shape: list[int]) -> np.ndarray:
        return shm.get_contents_as_numpy(self.regions[index][2], np.float32, shape)

    def release(self, unregister: Unregister | None) -> None:
        """Unregister (when the server can still be asked) and unlink every region; never raises."""
        while self.regions:
            name, _size, handle = self.regions.pop()
            if unregister is not None:
                try:
                    unregister(name)
                except Exception as exc:  # the server may be gone; the region is still ours to unlink
                    log.debug("unregister %s: %s", name, exc)
            try:
                shm.destroy_shared_memory_region(handle)
            except BufferError:
                # A view into the region is still referenced (e.g. by a traceback): unlink the name anyway
                # so nothing is left in /dev/shm; the mapping goes away with the last reference.
                try:
                    unlink_region_name(handle)
                except Exception as exc:  # PrivateApiChanged included: the run's own error must not be hidden
                    log.error("could not unlink shared-memory region %s: %s", name, exc)
            except Exception as exc:
                log.debug("unlink %s: %s", name, exc)


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
            self._regions.create({"in": self._nbytes(self.spec.input_dims, batch),
                                  "out": self._nbytes(self.spec.output_dims, batch)})
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

    @staticmethod
    def _nbytes(dims: tuple[int, ...], batch: int) -> int:
        return batch * int(np.prod(dims)) * 4

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
        out_shape = [n, *spec.output_dims]
        if self.transport == "shm":
            self._regions.write(0, batch)
            inp.set_shared_memory(self._regions.handle(0)[0], batch.nbytes)
            out.set_shared_memory(self._regions.handle(1)[0], self._nbytes(spec.output_dims, n))
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
        """A ``predict(batch)`` function for odk.windows: transient errors retried with backoff, shm
        regions registered again after a Triton restart; TritonUnavailable once Triton is gone.

        With the shm transport the returned array is a view into the session's output region, not a copy: it
        is valid until the next ``predict`` call (which overwrites the region) or ``close()``. Copy it to keep
        it; odk.windows blends each result into its accumulator before asking for the next batch.
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
