"""A stop request (SIGINT/SIGTERM) that the work checks at safe points.

The driver runs the operator's handler in a thread of its own, so a signal handler (which runs in the
main thread) cannot unwind the work by raising; it records the request, and the work raises
Interrupted at the next check (before each Triton request, while waiting for one, between studies),
running every clean-up on the way out.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from .errors import Interrupted

_requested = threading.Event()
_received: list[Interrupted] = []


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    request(Interrupted(signum, signal.Signals(signum).name))


def request(stop: Interrupted) -> None:
    """Record a stop as a signal does (the first one counts); the work raises it at its next check."""
    if not _received:
        _received.append(stop)
    _requested.set()


def install() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)


def received() -> Interrupted | None:
    return _received[0] if _received else None


def check() -> None:
    """Raise Interrupted when a stop was requested."""
    if _requested.is_set():
        raise _received[0] if _received else Interrupted(signal.SIGINT, "SIGINT")


def wait(seconds: float) -> bool:
    """Sleep up to ``seconds``, returning early (True) when a stop is requested."""
    return _requested.wait(seconds)
