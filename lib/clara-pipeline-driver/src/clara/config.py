"""Everything the driver takes from the environment, parsed and checked in one place."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from . import env
from .errors import Error
from .payload import Payload


@dataclass(frozen=True)
class DriverConfig:
    job_id: uuid.UUID
    job_name: str
    stage_name: str
    payload: Payload
    sync: bool
    synclock_path: Path
    synclock_timeout: float
    handler_timeout: float | None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> DriverConfig:
        """Parse the NVIDIA_CLARA_* variables (see :mod:`clara.env`); Error on a bad value."""
        environ = os.environ if environ is None else environ
        payload = Payload.from_environ(environ)
        synclock_timeout = env.parse_seconds(environ, env.SYNCLOCK_TIMEOUT, env.DEFAULT_SYNCLOCK_TIMEOUT)
        assert synclock_timeout is not None
        return cls(
            job_id=parse_job_id(environ.get(env.JOBID, "")),
            job_name=env.get_text(environ, env.JOBNAME, env.DEFAULT_JOB_NAME),
            stage_name=env.get_text(environ, env.STAGENAME, default_stage_name(payload)),
            payload=payload,
            sync=not env.parse_bool(environ, env.NOSYNCLOCK),
            synclock_path=Path(env.get_text(environ, env.SYNCLOCK_PATH, env.DEFAULT_SYNCLOCK_PATH)),
            synclock_timeout=synclock_timeout,
            handler_timeout=env.parse_seconds(environ, env.TIMEOUT, None),
        )


def parse_job_id(text: str) -> uuid.UUID:
    """A UUID in any standard spelling (32 hex digits with or without dashes); a fresh one when empty."""
    text = text.strip()
    if not text:
        return uuid.uuid4()
    try:
        return uuid.UUID(text)
    except ValueError:
        raise Error(f"{env.JOBID}={text!r} is not a UUID; expected 32 hex digits, dashes optional") from None


def default_stage_name(payload: Payload) -> str:
    """The ``op`` of the first ``op/output`` output name (the operator names its own outputs so)."""
    for entry in payload.output_entries:
        op, slash, _ = entry.name.partition("/")
        if slash:
            return op
    return env.DEFAULT_STAGE_NAME
