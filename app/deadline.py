"""A deadline the operator enforces itself around a blocking call (a Triton request).

gRPC's own deadline (``client_timeout``) is passed on every request, but grpcio's blocking call can
still wait in ``call.next_event()`` past it: after a 14 MB request to a stopped server was cancelled by
its deadline, the next request on the same connection was observed blocked for minutes. So every call
runs in a daemon thread and the caller stops waiting at the deadline; the stuck connection is then
dropped by the caller (see app.inference) instead of being reused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from . import stopping

T = TypeVar("T")


class DeadlineExpired(TimeoutError):
    """The call did not return in time (it may still be blocked in its thread, abandoned)."""


def bounded(fn: Callable[[], T], timeout_s: float, what: str, interruptible: bool = True) -> T:
    """``fn()``, or DeadlineExpired after ``timeout_s`` seconds. Exceptions of ``fn`` pass through.

    A stop request (app.stopping) ends the wait early with Interrupted, unless ``interruptible`` is
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
