"""C-STORE SCU: every DICOM object under the inputs to each destination ``AET@host:port`` (pynetdicom);
``AET@host:port?tls`` over DICOM TLS (odk/dicom/tls.py: DICOM_TLS_CA, DICOM_TLS_CERT, DICOM_TLS_KEY).

Bounded retries: a destination that cannot be reached, or an association that fails mid-way, is tried again
for the objects it has not yet accepted, with exponential backoff (``delay_s``, then twice as long each time,
at most ``MAX_DELAY_S``) for up to ``retry_s`` seconds (and at most ``retries`` more times when that is set).
An object the destination answers with a failure status is not retried: the destination refused it.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..config import ConfigError
from .series import Instance
from .tls import client_context

if TYPE_CHECKING:  # pynetdicom is imported where an association is made: not at all without a destination
    from pynetdicom import AE

log = logging.getLogger("odk.dicom")
# AE title: 1-16 printable characters without space, backslash or '@'; host: no space, ':' or '@'
DEST_RE = re.compile(r"^(?P<aet>[\x21-\x3f\x41-\x5b\x5d-\x7e]{1,16})@(?P<host>[^:@\s?]+):(?P<port>\d{1,5})"
                     r"(?P<tls>\?tls)?$")
MAX_CONTEXTS = 128
DEFAULT_RETRY_S = 300.0  # DICOM_RETRY_S: how long an unreachable destination is tried again
MAX_DELAY_S = 30.0  # the longest wait between two attempts


@dataclass(frozen=True)
class Destination:
    """A DICOM node to send to: AE title, host and port.

    >>> parse_destination("PACS@127.0.0.1:4242")          # Destination(aet='PACS', host='127.0.0.1', port=4242)
    """

    aet: str
    host: str
    port: int
    tls: bool = False

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}{'?tls' if self.tls else ''}"


@dataclass(frozen=True)
class StoreConfig:
    """How :func:`send` sends: the destinations, the calling AE title, retries, their delay and the timeout.

    >>> cfg = StoreConfig(parse_destinations("PACS@127.0.0.1:4242"))
    """

    destinations: tuple[Destination, ...]
    calling_aet: str = "ODK"
    retries: int | None = None  # None: as many as fit in retry_s
    delay_s: float = 1.0
    timeout_s: float = 30.0
    tls_context: ssl.SSLContext | None = None  # for the destinations marked ?tls
    retry_s: float = DEFAULT_RETRY_S

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StoreConfig:
        """DICOM_DESTINATION (AET@host:port, comma-separated), DICOM_CALLING_AET (ODK), DICOM_RETRY_S (300),
        DICOM_RETRIES (no limit but DICOM_RETRY_S), DICOM_RETRY_DELAY_S (1, doubled each time),
        DICOM_TIMEOUT_S (30)."""
        dests = parse_destinations(env.get("DICOM_DESTINATION", ""))
        try:
            retries = int(env["DICOM_RETRIES"]) if env.get("DICOM_RETRIES", "") != "" else None
            delay = float(env.get("DICOM_RETRY_DELAY_S", "1"))
            timeout = float(env.get("DICOM_TIMEOUT_S", "30"))
            retry_s = float(env.get("DICOM_RETRY_S") or DEFAULT_RETRY_S)
        except ValueError as exc:
            raise ConfigError("DICOM_RETRY_S, DICOM_RETRIES, DICOM_RETRY_DELAY_S, DICOM_TIMEOUT_S must be numbers "
                              f"({exc})") from None
        if (retries is not None and retries < 0) or delay < 0 or timeout <= 0 or retry_s < 0:
            raise ConfigError("DICOM_RETRY_S, DICOM_RETRIES and DICOM_RETRY_DELAY_S must be >= 0, DICOM_TIMEOUT_S > 0")
        calling = env.get("DICOM_CALLING_AET", "ODK")
        if not 0 < len(calling) <= 16:
            raise ConfigError(f"DICOM_CALLING_AET={calling!r}: an AE title has 1 to 16 characters")
        tls_context = client_context(env) if any(d.tls for d in dests) else None
        return cls(destinations=dests, calling_aet=calling, retries=retries, delay_s=delay, timeout_s=timeout,
                   retry_s=retry_s, tls_context=tls_context)


def backoff(cfg: StoreConfig, clock: Callable[[], float] = time.monotonic) -> Iterator[float]:
    """The wait before each attempt: 0 for the first, then delay_s, doubling up to MAX_DELAY_S; ends when the
    next wait would pass retry_s after the first attempt began, or after ``retries`` retries when set."""
    deadline = clock() + cfg.retry_s
    yield 0.0
    delay, done = cfg.delay_s, 0
    while cfg.retries is None or done < cfg.retries:
        if clock() + delay > deadline:
            return
        yield delay
        done += 1
        delay = min(max(delay * 2, 0.1), MAX_DELAY_S)


def parse_destination(text: str) -> Destination:
    """One ``AET@host:port`` (spaces around it ignored); ConfigError naming the expected form otherwise."""
    m = DEST_RE.match(text.strip())
    if not m or not 0 < int(m["port"]) < 65536:
        raise ConfigError(f"DICOM_DESTINATION entry {text!r} is not AET@host:port or AET@host:port?tls "
                          "(e.g. ORTHANC@127.0.0.1:4242)")
    return Destination(m["aet"], m["host"], int(m["port"]), tls=bool(m["tls"]))


def parse_destinations(text: str) -> tuple[Destination, ...]:
    """DICOM_DESTINATION: ``AET@host:port`` entries, comma-separated; empty: none. The one reading of it, for
    register-results and for the listener that hands it on."""
    return tuple(parse_destination(d) for d in text.split(",") if d.strip())


@dataclass
class ObjectStatus:
    file: str
    sop_instance_uid: str
    sop_class_uid: str
    status: str = "not sent"  # 0xNNNN as the destination answered, or why it was not sent
    ok: bool = False
    attempts: int = 0


@dataclass
class DestinationResult:
    """What :func:`send` did for one destination: ok or the error, seconds, each object's status.

    >>> result = send(instances, dest, cfg)                  # result.ok, result.error
    """

    destination: str
    ok: bool = False
    error: str = ""
    seconds: float = 0.0
    objects: list[ObjectStatus] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _ae(cfg: StoreConfig, instances: Sequence[Instance]) -> AE:
    from pynetdicom import AE

    ae = AE(ae_title=cfg.calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = cfg.timeout_s
    ae.connection_timeout = min(cfg.timeout_s, 10.0)
    pairs: dict[str, set[str]] = {}
    for inst in instances:
        ts = str(inst.ds.file_meta.TransferSyntaxUID) if "TransferSyntaxUID" in inst.ds.get("file_meta", {}) \
            else ExplicitVRLittleEndian
        pairs.setdefault(str(inst.ds.SOPClassUID), set()).add(ts)
    if sum(len(v) for v in pairs.values()) > MAX_CONTEXTS:
        raise ConfigError(f"{len(pairs)} SOP classes x transfer syntaxes exceed one association's "
                          f"{MAX_CONTEXTS} presentation contexts")
    for sop_class, syntaxes in pairs.items():
        for ts in sorted(syntaxes):
            extra = [] if ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian) else [ExplicitVRLittleEndian]
            ae.add_requested_context(sop_class, [ts, *extra])
    return ae


def _association_error(assoc: object, dest: Destination, calling: str) -> str:
    if dest.tls and not getattr(assoc, "is_rejected", False) and not getattr(assoc, "is_aborted", False):
        return (f"no TLS association with {dest}: is it a DICOM TLS port, does DICOM_TLS_CA trust its certificate "
                "(for this host name), and does it want a client certificate (DICOM_TLS_CERT/DICOM_TLS_KEY)?")
    if getattr(assoc, "is_rejected", False):
        return (f"{dest} rejected the association (is the calling AE title '{calling}' allowed there, and is "
                f"'{dest.aet}' its AE title?)")
    if getattr(assoc, "is_aborted", False):
        return f"{dest} aborted the association"
    return f"{dest} dropped the connection without a DICOM answer (is it a DICOM service?)"


def reachable(dest: Destination, timeout_s: float) -> str:
    """'' when a TCP connection to ``dest`` opens, else why not."""
    try:
        with socket.create_connection((dest.host, dest.port), timeout=timeout_s):
            return ""
    except OSError as exc:
        return f"{dest} is unreachable ({exc.strerror or exc}); is the DICOM service running there?"


def send(instances: Sequence[Instance], dest: Destination, cfg: StoreConfig,
         root: Path | None = None) -> DestinationResult:
    """Send every instance to ``dest``; never raises for network problems (they go into the result)."""
    t0 = time.perf_counter()
    result = DestinationResult(str(dest))
    statuses = [ObjectStatus(str(i.path.relative_to(root)) if root and i.path.is_relative_to(root) else str(i.path),
                             i.sop_uid, str(i.ds.SOPClassUID)) for i in instances]
    result.objects = statuses
    ae = _ae(cfg, instances)
    for attempt, delay in enumerate(backoff(cfg)):
        pending = [k for k, s in enumerate(statuses) if not s.ok and s.status in ("not sent", "association lost")]
        if not pending:
            break
        if attempt:
            log.info("%s: attempt %d for %d object(s) in %.1f s (%s; trying for up to %g s)", dest, attempt + 1,
                     len(pending), delay, result.error or "not all stored", cfg.retry_s)
            time.sleep(delay)
        why = reachable(dest, ae.connection_timeout)
        if why:
            result.error = why
            continue
        tls_args = (cfg.tls_context, dest.host) if dest.tls and cfg.tls_context else None
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.aet, tls_args=tls_args)
        if not assoc.is_established:
            result.error = _association_error(assoc, dest, cfg.calling_aet)
            if assoc.is_rejected:
                break  # a rejection is an answer: asking again gets the same one
            continue
        result.error = ""
        try:
            for k in pending:
                statuses[k].attempts += 1
                try:
                    status = assoc.send_c_store(instances[k].ds)
                except (ValueError, RuntimeError) as exc:  # no accepted context for this object
                    statuses[k].status = f"not sent: {exc}"
                    continue
                if "Status" not in status:  # no answer: aborted, or timed out
                    statuses[k].status = "association lost"
                    result.error = f"{dest} did not answer a C-STORE (association aborted or timed out)"
                    break
                code = int(status.Status)
                statuses[k].status = f"0x{code:04X}"
                statuses[k].ok = code == 0x0000 or 0xB000 <= code <= 0xBFFF  # success, or success with warning
        finally:
            if assoc.is_established:
                assoc.release()
    refused = [s for s in statuses if not s.ok]
    if refused and not result.error:
        codes = sorted({s.status for s in refused})
        result.error = f"{dest} refused {len(refused)} of {len(statuses)} object(s) (status {', '.join(codes)})"
    result.ok = not refused
    result.seconds = round(time.perf_counter() - t0, 3)
    return result
