"""The listener's Storage SCP (pynetdicom): C-ECHO and C-STORE of every storage SOP class, any transfer
syntax; each received instance goes to its study's job folder as it arrives (never only in memory)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification

from kit.dicom.collector import StudyCollector

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


@dataclass
class AssocCount:
    calling_aet: str
    address: str
    instances: int = 0
    studies: set[str] = field(default_factory=set)


class StorageSCP:
    def __init__(self, aet: str, allowed: tuple[str, ...], collector: StudyCollector,
                 log: Callable[[str], None]) -> None:
        self.collector = collector
        self.log = log
        self.allowed = allowed
        self.assocs: dict[int, AssocCount] = {}
        self.ae = AE(ae_title=aet)
        self.ae.require_called_aet = True
        self.ae.require_calling_aet = list(allowed)
        for cx in AllStoragePresentationContexts:
            self.ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self.ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        self.server = None

    def handlers(self) -> list[tuple[evt.EventType, Callable]]:
        return [(evt.EVT_REQUESTED, self.on_requested), (evt.EVT_ESTABLISHED, self.on_established),
                (evt.EVT_C_ECHO, self.on_echo), (evt.EVT_C_STORE, self.on_store),
                (evt.EVT_CONN_CLOSE, self.on_close)]

    def start(self, host: str, port: int) -> None:
        self.server = self.ae.start_server((host, port), block=False, evt_handlers=self.handlers())

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

    def on_requested(self, event: evt.Event) -> None:
        calling = str(event.assoc.requestor.primitive.calling_ae_title).strip()
        if self.allowed and calling not in self.allowed:
            self.log(f"association from {calling} ({event.assoc.requestor.address}) rejected: calling AE "
                     f"not in the allow-list ({', '.join(self.allowed)})")

    def on_established(self, event: evt.Event) -> None:
        r = event.assoc.requestor
        self.assocs[id(event.assoc)] = AssocCount(r.ae_title, r.address)

    def on_echo(self, event: evt.Event) -> int:
        return SUCCESS

    def on_store(self, event: evt.Event) -> int:
        count = self.assocs.setdefault(id(event.assoc), AssocCount(event.assoc.requestor.ae_title,
                                                                   event.assoc.requestor.address))
        try:
            ds = event.dataset
            study, series = str(ds.StudyInstanceUID), str(ds.get("SeriesInstanceUID", "unknown"))
            sop = str(event.request.AffectedSOPInstanceUID)
        except Exception as exc:  # an object pydicom cannot read: refused, named in the log
            self.log(f"instance from {count.calling_aet} refused: cannot read its StudyInstanceUID ({exc})")
            return CANNOT_UNDERSTAND
        try:
            job = self.collector.job_for(study, count.calling_aet, id(event.assoc))
            job.add_instance(series, sop, event.encoded_dataset())
        except OSError as exc:
            self.log(f"instance {sop} of study {study} not stored: {exc}")
            return OUT_OF_RESOURCES
        count.instances += 1
        count.studies.add(study)
        return SUCCESS

    def on_close(self, event: evt.Event) -> None:
        count = self.assocs.pop(id(event.assoc), None)
        self.collector.closed(id(event.assoc))
        if count is None:
            return
        if count.instances:
            self.log(f"association from {count.calling_aet} ({count.address}) closed: {count.instances} "
                     f"instance(s) of {len(count.studies)} study(ies)")
        else:
            self.log(f"association from {count.calling_aet} ({count.address}) closed: no instances, no job")
