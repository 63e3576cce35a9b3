"""Settings of the DICOM listener, from the command line (scripts/listen.sh passes the make variables)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from app.dicom.store import Destination  # the register-results operator's, shared

AET_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # 16 printable characters, no backslash
MIN_IDLE_S = 0.0  # 0: a study's job starts as soon as the association that delivered it is released
DEFAULT_IDLE_S = 5.0  # LISTEN_IDLE_S of the Makefile (Clara's rule: wait this long for more of the study)


class ConfigError(ValueError):
    """A setting that cannot work; the message says which and what to do."""


def check_aet(value: str, what: str) -> str:
    value = value.strip()
    if not AET_RE.match(value):
        raise ConfigError(f"{what} '{value}' is not a DICOM AE title (1-16 printable characters, no backslash)")
    return value


def parse_destination(text: str) -> Destination:
    """``AET@host:port`` -> Destination; ConfigError naming the expected form otherwise."""
    m = re.match(r"^([^@]+)@([^:@]+):(\d+)$", text.strip())
    if not m or not 0 < int(m[3]) < 65536:
        raise ConfigError(f"DICOM_DESTINATION '{text}' is not AET@host:port (e.g. ORTHANC@127.0.0.1:4242)")
    return Destination(check_aet(m[1], "DICOM_DESTINATION AE title"), m[2], int(m[3]))


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
    destination: Destination | None
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
