"""Settings of the DICOM listener, from the command line (scripts/listen.sh passes the make variables)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

# DICOM_DESTINATION is read as the register-results operator reads it (the operator image has no kit): one
# parser, one error type, for `make listen` and for the operator it hands the destinations to.
from kit.dicom.tls import ServerTls, listener_tls
from odk import ConfigError
from odk.dicom import Destination, parse_destinations

__all__ = ["ConfigError", "Destination", "DoorSettings", "ListenerConfig", "check_aet", "parse_allow_list",
           "parse_destinations"]

AET_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # 16 printable characters, no backslash
MIN_IDLE_S = 0.0  # 0: a study's job starts as soon as the association that delivered it is released
DEFAULT_IDLE_S = 5.0  # LISTEN_IDLE_S of the Makefile (Clara's rule: wait this long for more of the study)
MAX_PDU = 16382  # the Maximum Length the listener offers (pynetdicom's default); longer P-DATA PDUs are refused


@dataclass(frozen=True)
class DoorSettings:
    """What a peer may use of the listener: LISTEN_MAX_* limits, timeouts, the free-space floor."""
    max_associations: int = 16  # LISTEN_MAX_ASSOCIATIONS: associations open at once
    max_per_caller: int = 4  # LISTEN_MAX_PER_CALLER: of them, from one calling AE title
    max_connections: int = 64  # LISTEN_MAX_CONNECTIONS: TCP connections, associated or not yet
    acse_timeout_s: float = 10.0  # LISTEN_ACSE_TIMEOUT_S: to send the A-ASSOCIATE-RQ, or answer a release
    dimse_timeout_s: float = 30.0  # LISTEN_DIMSE_TIMEOUT_S
    network_timeout_s: float = 30.0  # LISTEN_NETWORK_TIMEOUT_S: an association silent this long is aborted
    min_free_mb: int = 100  # LISTEN_MIN_FREE_MB: below this free in the run dir, stores get Out of Resources

    def check(self) -> DoorSettings:
        for name, value in (("LISTEN_MAX_ASSOCIATIONS", self.max_associations),
                            ("LISTEN_MAX_PER_CALLER", self.max_per_caller),
                            ("LISTEN_MAX_CONNECTIONS", self.max_connections)):
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, not {value}")
        if self.max_connections < self.max_associations:
            raise ConfigError(f"LISTEN_MAX_CONNECTIONS ({self.max_connections}) must be at least "
                              f"LISTEN_MAX_ASSOCIATIONS ({self.max_associations})")
        for name, seconds in (("LISTEN_ACSE_TIMEOUT_S", self.acse_timeout_s),
                              ("LISTEN_DIMSE_TIMEOUT_S", self.dimse_timeout_s),
                              ("LISTEN_NETWORK_TIMEOUT_S", self.network_timeout_s)):
            if not seconds > 0:
                raise ConfigError(f"{name} must be a positive number of seconds, not {seconds:g}")
        if self.min_free_mb < 0:
            raise ConfigError(f"LISTEN_MIN_FREE_MB must be 0 or more, not {self.min_free_mb}")
        return self


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
    door: DoorSettings = field(default_factory=DoorSettings)
    # DICOM TLS: LISTEN_TLS_CERT/LISTEN_TLS_KEY (+ LISTEN_TLS_CA: client certificates required); None: plain.
    tls: ServerTls | None = field(default_factory=lambda: listener_tls(os.environ))

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
        self.door.check()
        if self.tls is not None:
            self.tls.context()  # unreadable or mismatched files: one line now, not at the first association
        return self

    @property
    def incoming_dir(self) -> Path:
        """Where instances are streamed while they arrive (beside jobs/: moved into a job by a rename)."""
        return self.run_dir / "incoming"
