"""The listener's Storage SCP (pynetdicom): C-ECHO and C-STORE of every storage SOP class, any transfer
syntax. pynetdicom streams each instance to a file as its PDUs arrive (``STORE_RECV_CHUNKED_DATASET``: never
whole in memory); the instance is checked (kit/dicom/intake.py) and moved into its study's job folder before
the listener answers Success. Connections pass the door first (kit/dicom/door.py)."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.sop_class import Verification

from kit.dicom.collector import StudyCollector
from kit.dicom.door import A_ABORT, A_RELEASE_RQ, Admission, Limits, PduGate
from kit.dicom.intake import OUT_OF_RESOURCES, Refused, check_instance, shown
from kit.dicom.tls import ServerTls

SUCCESS = 0x0000
CANNOT_UNDERSTAND = 0xC000
MB = 1 << 20


@dataclass(frozen=True)
class Timeouts:
    acse_s: float  # a connection must send its A-ASSOCIATE-RQ (and a release be answered) within this
    dimse_s: float
    network_s: float  # an association silent this long is aborted


@dataclass
class AssocCount:
    calling_aet: str
    address: str
    instances: int = 0
    same: int = 0  # identical copies of instances already received
    studies: set[str] = field(default_factory=set)
    refused: dict[tuple[str, str], int] = field(default_factory=dict)  # (fault, series) -> instances
    released: bool = False
    aborted: bool = False
    low_space_said: bool = False


def peer_text(address: Any) -> str:
    return str(address[0]) if isinstance(address, tuple) else str(address)


class StorageSCP:
    def __init__(self, aet: str, allowed: tuple[str, ...], collector: StudyCollector, log: Callable[[str], None],
                 limits: Limits, timeouts: Timeouts, incoming: Path, min_free_mb: int) -> None:
        self.collector = collector
        self.log = log
        self.allowed = allowed
        self.incoming = incoming  # where pynetdicom streams instances: on the jobs' file system
        self.min_free = min_free_mb * MB
        self.assocs: dict[int, AssocCount] = {}
        self.gates: dict[int, PduGate] = {}
        self.threads: dict[int, threading.Thread] = {}
        self.lock = threading.Lock()
        self.admission = Admission(limits, log)
        _config.STORE_RECV_CHUNKED_DATASET = True  # instances go to a file as they arrive
        self.ae = AE(ae_title=aet)
        self.ae.require_called_aet = True
        self.ae.require_calling_aet = list(allowed)
        self.ae.maximum_pdu_size = limits.max_pdu
        # the door counts associations itself; pynetdicom's own limit (which counts silent connections too)
        # stays out of the way
        self.ae.maximum_associations = limits.max_connections + 1
        self.ae.acse_timeout = timeouts.acse_s
        self.ae.dimse_timeout = timeouts.dimse_s
        self.ae.network_timeout = timeouts.network_s
        for cx in AllStoragePresentationContexts:
            self.ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self.ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        self.server = None

    def handlers(self) -> list[tuple[evt.EventType, Callable]]:
        return [(evt.EVT_CONN_OPEN, self.on_open), (evt.EVT_REQUESTED, self.on_requested),
                (evt.EVT_ESTABLISHED, self.on_established), (evt.EVT_RELEASED, self.on_released),
                (evt.EVT_ABORTED, self.on_aborted), (evt.EVT_C_ECHO, self.on_echo), (evt.EVT_C_STORE, self.on_store),
                (evt.EVT_CONN_CLOSE, self.on_close)]

    def start(self, host: str, port: int, tls: ServerTls | None = None) -> None:
        """Listen on host:port (DICOM TLS only when ``tls`` is given: pynetdicom wraps each accepted socket)."""
        self.incoming.mkdir(parents=True, exist_ok=True)
        context = tls.context(self.log) if tls is not None else None
        self.server = self.ae.start_server((host, port), block=False, evt_handlers=self.handlers(),
                                           ssl_context=context)
        if tls is not None:
            self.log(f"DICOM TLS only on {host}:{port} (certificate {tls.cert}); "
                     + (f"client certificates from the CA in {tls.ca} required" if tls.ca else
                        "no client certificate asked for (LISTEN_TLS_CA unset)"))

    def stop(self, grace_s: float = 2.0) -> None:
        """Refuse new associations (the listening socket is closed first), then abort the open ones and wait
        up to grace_s for their threads: nothing is stored once this returns."""
        if self.server is None:
            return
        server, self.server = self.server, None
        with contextlib.suppress(OSError):  # at once: the serve loop notices a shutdown only every 0.5 s
            server.socket.close()
        server.shutdown()
        open_assocs = server.active_associations
        for assoc in open_assocs:
            assoc.abort()
        deadline = time.monotonic() + grace_s
        for assoc in open_assocs:
            assoc.join(timeout=max(0.0, deadline - time.monotonic()))
        if open_assocs:
            self.log(f"{len(open_assocs)} open association(s) aborted")

    # -- the connection ----------------------------------------------------------------------------------------
    def on_open(self, event: evt.Event) -> None:
        """Before the first byte is read: the gate on the socket, the connection counted (or refused)."""
        key, peer = id(event.assoc), peer_text(event.address)
        ok = self.admission.connect(key, peer)
        with self.lock:
            self.gates[key] = PduGate(event.assoc.dul.socket, key, peer, self.admission, self.log, ok)
            self.threads[key] = event.assoc

    def on_requested(self, event: evt.Event) -> None:
        calling = str(event.assoc.requestor.primitive.calling_ae_title).strip()
        if self.allowed and calling not in self.allowed:
            self.log(f"association from {shown(calling)} ({event.assoc.requestor.address}) rejected: calling AE "
                     f"not in the allow-list ({', '.join(self.allowed)})")
        called = str(event.assoc.requestor.primitive.called_ae_title).strip()
        if called != self.ae.ae_title.strip():
            self.log(f"association from {shown(calling)} ({event.assoc.requestor.address}) rejected: it called "
                     f"'{shown(called)}', this listener is '{self.ae.ae_title.strip()}'")

    def on_established(self, event: evt.Event) -> None:
        r = event.assoc.requestor
        with self.lock:
            self.assocs[id(event.assoc)] = AssocCount(r.ae_title, r.address)

    def on_released(self, event: evt.Event) -> None:
        count = self.assocs.get(id(event.assoc))
        if count is not None:
            count.released = True

    def on_aborted(self, event: evt.Event) -> None:
        count = self.assocs.get(id(event.assoc))
        if count is not None:
            count.aborted = True

    def on_echo(self, event: evt.Event) -> int:
        return SUCCESS

    # -- storing ----------------------------------------------------------------------------------------------
    def on_store(self, event: evt.Event) -> int:
        key = id(event.assoc)
        count = self.assocs.get(key)
        if count is None:
            count = self.assocs.setdefault(key, AssocCount(event.assoc.requestor.ae_title,
                                                           event.assoc.requestor.address))
        received = Path(event.dataset_path)
        try:
            return self._store(event, count, received)
        except Exception as exc:  # never let one instance take the association or the service down
            with contextlib.suppress(OSError):
                received.unlink()
            self._refuse(count, key, Refused(OUT_OF_RESOURCES, f"not stored ({shown(exc, 120)})"))
            return OUT_OF_RESOURCES

    def _store(self, event: evt.Event, count: AssocCount, received: Path) -> int:
        key = id(event.assoc)
        verdict = check_instance(received, str(event.request.AffectedSOPClassUID),
                                 str(event.request.AffectedSOPInstanceUID))
        if isinstance(verdict, Refused):
            received.unlink(missing_ok=True)
            self._refuse(count, key, verdict)
            return verdict.status
        free = shutil.disk_usage(self.incoming).free
        if free < self.min_free:
            received.unlink(missing_ok=True)
            if not count.low_space_said:
                count.low_space_said = True
                self.log(f"association from {count.calling_aet} ({count.address}): only {free // MB} MB free in "
                         f"{self.incoming.parent}, under LISTEN_MIN_FREE_MB={self.min_free // MB}: instances are "
                         "refused with Out of Resources (0xA700) until there is room")
            self._refuse(count, key, Refused(OUT_OF_RESOURCES, "too little free disk space", verdict.study,
                                             verdict.series))
            return OUT_OF_RESOURCES
        try:
            stored = self.collector.store(verdict, received, count.calling_aet, key)
        except OSError as exc:
            received.unlink(missing_ok=True)
            self._refuse(count, key, Refused(OUT_OF_RESOURCES, f"not stored ({shown(exc, 120)})", verdict.study,
                                             verdict.series))
            return OUT_OF_RESOURCES
        if stored.outcome == "conflict":
            self._refuse(count, key, Refused(CANNOT_UNDERSTAND, stored.detail, verdict.study, verdict.series))
            return CANNOT_UNDERSTAND
        count.studies.add(verdict.study)
        if stored.outcome == "same":
            count.same += 1
        else:
            count.instances += 1
        return SUCCESS

    def _refuse(self, count: AssocCount, key: int, refused: Refused) -> None:
        group = (refused.fault, refused.series)
        count.refused[group] = count.refused.get(group, 0) + 1
        if refused.study:
            count.studies.add(refused.study)
            self.collector.refused(refused.study, key, f"{count.refused[group]} instance(s) refused: {refused.fault}")

    # -- the end ----------------------------------------------------------------------------------------------
    def on_close(self, event: evt.Event) -> None:
        self._ended(id(event.assoc))

    def sweep(self) -> None:
        """Associations whose threads ended without a close event (pynetdicom's hard abort path): ended now."""
        with self.lock:
            gone = [k for k, t in self.threads.items() if t.ident is not None and not t.is_alive()]
        for key in gone:
            self._ended(key)

    def _ended(self, key: int) -> None:
        with self.lock:
            count = self.assocs.pop(key, None)
            gate = self.gates.pop(key, None)
            assoc = self.threads.pop(key, None)
        if gate is None and count is None:
            return  # already ended
        self.admission.release(key)
        broken = ""
        if count is not None and gate is not None:  # what the peer sent, seen before pynetdicom's events settle
            count.released = count.released or A_RELEASE_RQ in gate.seen
            count.aborted = count.aborted or A_ABORT in gate.seen
        if count is not None and assoc is not None:
            count.released = count.released or bool(getattr(assoc, "is_released", False))
        if count is not None and not count.released:
            how = gate.refusal if gate is not None and gate.refusal else ("aborted" if count.aborted else
                                                                          "closed without A-RELEASE")
            broken = f"the association from {count.calling_aet} ({count.address}) {how}"
        self.collector.closed(key, broken)
        if count is None:
            if gate is not None and not gate.requested and not gate.refusal:
                self.log(f"connection from {gate.peer} closed: no association request (A-ASSOCIATE-RQ) within "
                         f"{self.ae.acse_timeout:g} s, or the peer hung up")
            return
        for (fault, series), n in count.refused.items():
            self.log(f"association from {count.calling_aet} ({count.address}): {n} instance(s)"
                     f"{f' of series {series}' if series else ''} refused: {fault}"
                     + ("; re-export them with UIDs" if fault.startswith("no ") else ""))
        end = "released" if count.released else (broken.split(") ", 1)[1] if broken else "ended")
        if count.instances or count.same:
            same = f", {count.same} identical to instances already received" if count.same else ""
            self.log(f"association from {count.calling_aet} ({count.address}) {end}: {count.instances} "
                     f"instance(s) stored{same}, {len(count.studies)} study(ies)")
        elif count.refused:
            self.log(f"association from {count.calling_aet} ({count.address}) {end}: nothing stored")
        else:
            self.log(f"association from {count.calling_aet} ({count.address}) closed: no instances, no job")
