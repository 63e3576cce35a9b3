"""Platform synchronisation: wait, bounded, for the readiness file before the execute handler runs.

The platform (or a local pipeline runner) creates the file named by NVIDIA_CLARA_SYNCLOCK_PATH once the
operator's inputs are complete. Its content does not matter; the driver never modifies or removes it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from . import env
from .errors import Error

log = logging.getLogger("clara")

POLL_SECONDS = 0.05


def wait_for_readiness(path: Path, timeout: float) -> None:
    """Return once ``path`` exists; Error when it has not appeared within ``timeout`` seconds."""
    if path.exists():
        log.debug("readiness signal %s present", path)
        return
    log.info("waiting up to %gs for the readiness signal %s (%s=TRUE skips this outside the platform)",
             timeout, path, env.NOSYNCLOCK)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(POLL_SECONDS, remaining))
        if path.exists():
            log.info("readiness signal %s appeared", path)
            return
    raise Error(
        f"readiness signal {path} ({env.SYNCLOCK_PATH}) did not appear within {timeout:g}s "
        f"({env.SYNCLOCK_TIMEOUT}); outside the platform set {env.NOSYNCLOCK}=TRUE"
    )
