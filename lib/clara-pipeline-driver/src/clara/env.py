"""Names, defaults and parsers of the environment variables the driver reads.

Every variable is optional; an operator run with none of them set works on a laptop
except that it has no payload and waits for the readiness signal (set
NVIDIA_CLARA_NOSYNCLOCK=TRUE outside the platform).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .errors import Error

#: ``name:/absolute/path`` entries separated by ``;`` -- the operator's inputs.
INPUTPATHS = "NVIDIA_CLARA_INPUTPATHS"
#: ``name:/absolute/path`` entries separated by ``;`` -- the operator's outputs (created when missing).
OUTPUTPATHS = "NVIDIA_CLARA_OUTPUTPATHS"
#: The job's id: a UUID, with or without dashes. Default: a fresh random UUID per run.
JOBID = "NVIDIA_CLARA_JOBID"
#: The job's name. Default: ``local``.
JOBNAME = "NVIDIA_CLARA_JOBNAME"
#: The operator's (stage's) name. Default: ``op`` of the first ``op/output`` output name, else ``operator``.
STAGENAME = "NVIDIA_CLARA_STAGENAME"
#: True (``1``, ``true``, ``yes``, ``on``, any case) skips waiting for the readiness signal.
NOSYNCLOCK = "NVIDIA_CLARA_NOSYNCLOCK"
#: The readiness signal: a file the platform creates once the operator's inputs are complete.
SYNCLOCK_PATH = "NVIDIA_CLARA_SYNCLOCK_PATH"
#: Seconds to wait for the readiness signal before failing.
SYNCLOCK_TIMEOUT = "NVIDIA_CLARA_SYNCLOCK_TIMEOUT"
#: Seconds each handler may run before the operator fails. Default: no limit.
TIMEOUT = "NVIDIA_CLARA_TIMEOUT"

ALL = (INPUTPATHS, OUTPUTPATHS, JOBID, JOBNAME, STAGENAME, NOSYNCLOCK, SYNCLOCK_PATH, SYNCLOCK_TIMEOUT,
       TIMEOUT)

DEFAULT_JOB_NAME = "local"
DEFAULT_STAGE_NAME = "operator"
DEFAULT_SYNCLOCK_PATH = "/run/clara/ready"
DEFAULT_SYNCLOCK_TIMEOUT = 300.0

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def get_text(environ: Mapping[str, str], name: str, default: str) -> str:
    """The variable's value stripped of surrounding whitespace; ``default`` when unset or blank."""
    value = environ.get(name, "").strip()
    return value or default


def parse_bool(environ: Mapping[str, str], name: str) -> bool:
    """True for 1/true/yes/on, False for unset/empty/0/false/no/off (any case); anything else is an Error."""
    raw = environ.get(name, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise Error(f"{name}={raw!r} is not a boolean; expected TRUE/true/1/yes or FALSE/false/0/no")


def parse_seconds(environ: Mapping[str, str], name: str, default: float | None) -> float | None:
    """A non-negative number of seconds; ``default`` when unset or blank."""
    raw = environ.get(name, "")
    if not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise Error(f"{name}={raw!r}: expected a number of seconds >= 0, e.g. {name}=300")
    return value
