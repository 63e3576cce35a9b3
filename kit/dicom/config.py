"""Settings of the DICOM listener, from the command line (scripts/listen.sh passes the make variables)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# DICOM_DESTINATION is read as the register-results operator reads it (the operator image has no kit): one
# parser, one error type, for `make listen` and for the operator it hands the destinations to.
from odk import ConfigError
from odk.dicom import Destination, parse_destinations

__all__ = ["ConfigError", "Destination", "ListenerConfig", "check_aet", "parse_allow_list", "parse_destinations"]

AET_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # 16 printable characters, no backslash
MIN_IDLE_S = 0.0  # 0: a study's job starts as soon as the association that delivered it is released
DEFAULT_IDLE_S = 5.0  # LISTEN_IDLE_S of the Makefile (Clara's rule: wait this long for more of the study)


def check_aet(value: str, what: str) -> str:
    value = value.strip()
    if not AET_RE.match(value):
        raise ConfigError(f"{what} '{value}' is not a DICOM AE title (1-16 printable characters, no backslash)")
    return value


def parse_allow_list(text: str) -> tuple[str, ...]:
    """Comma- or space-separated calling AE titles; empty: every caller is accepted."""
    return tuple(check_aet(a, "LISTEN_ALLOWED_AETS entry") for a in re.split(r"[,\s]+", text) if a)


@dataclass(frozen=True)
class ListenerConfig:
    aet: str
    host: str
    port: int
    idle_s: float
    pipeline: Path
    run_dir: Path  # .run/listen: pid, state, log, jobs/
    destinations: tuple[Destination, ...]  # empty: results stay in each job's output/
    allowed_aets: tuple[str, ...] = ()
    runtime: str = "host"
    engine: str = ""
    image: str = "clara/simple-operator"
    workers: int = 1
    extra_params: tuple[str, ...] = field(default_factory=tuple)

    @property
    def jobs_dir(self) -> Path:
        return self.run_dir / "jobs"

    def check(self) -> ListenerConfig:
        check_aet(self.aet, "LISTEN_AET")
        if not 0 < self.port < 65536:
            raise ConfigError(f"LISTEN_PORT {self.port} is not a TCP port")
        if self.idle_s < MIN_IDLE_S:
            raise ConfigError(f"LISTEN_IDLE_S {self.idle_s:g} is negative; give seconds (0: no wait after release)")
        if not self.pipeline.is_file():
            raise ConfigError(f"PIPELINE={self.pipeline} is not a file; e.g. PIPELINE=def/liver-dicom-pipeline.yml")
        if self.workers < 1:
            raise ConfigError("LISTEN_WORKERS must be at least 1")
        return self
