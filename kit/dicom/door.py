"""The listener's door: what a peer may send before pynetdicom buffers it, and how many may come in.

Every connection's reads go through a ``PduGate`` (installed on the association's socket when the connection
opens, before its first byte is read). pynetdicom reads a PDU as its 6-byte header, then the length the
header declares, in one buffer; the gate looks at each header first:

- a P-DATA-TF PDU longer than the Maximum Length the listener offered (or any other PDU over 1 MiB) is
  answered with A-ABORT and the connection closed, without reading its body;
- an A-ASSOCIATE-RQ is admitted only when its calling AE title is a valid AE title, fewer than
  ``max_associations`` associations are open and fewer than ``max_per_caller`` of that calling AE title;
  otherwise A-ASSOCIATE-RJ (transient, local limit exceeded; or permanent, calling AE not recognised);
- connections beyond ``max_connections`` (associated or not yet) are closed at once.

Connections that are open but have not sent an A-ASSOCIATE-RQ do not count against the association limits,
so silent peers cannot lock others out; pynetdicom closes them after the ACSE timeout. Every refusal is
logged with the peer's address (and calling AE title when it was sent).
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kit.dicom.intake import shown

A_ASSOCIATE_RQ, A_ASSOCIATE_RJ, P_DATA_TF, A_RELEASE_RQ, A_ABORT = 0x01, 0x03, 0x04, 0x05, 0x07
HEADER = 6
CONTROL_PDU_LIMIT = 1 << 20  # an A-ASSOCIATE-RQ proposing every storage class is ~20 KB
AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable, no backslash


def reject_pdu(result: int, source: int, reason: int) -> bytes:
    return struct.pack(">BBLBBBB", A_ASSOCIATE_RJ, 0, 4, 0, result, source, reason)


def abort_pdu(source: int = 2, reason: int = 6) -> bytes:
    """A-ABORT from the service provider: invalid PDU parameter value (PS3.8 Table 9-26)."""
    return struct.pack(">BBLBBBB", A_ABORT, 0, 4, 0, 0, source, reason)


# A-ASSOCIATE-RJ (PS3.8 Table 9-21): (result, source, reason)
LIMIT_EXCEEDED = (2, 3, 2)  # rejected-transient, service-provider (presentation), local-limit-exceeded
CALLING_AE_NOT_RECOGNISED = (1, 1, 3)  # rejected-permanent, service-user, calling-AE-title-not-recognized


@dataclass(frozen=True)
class Limits:
    max_pdu: int  # the Maximum Length the listener offers: P-DATA-TF PDUs longer than this are refused
    max_associations: int
    max_per_caller: int
    max_connections: int


class Admission:
    """Open connections and admitted associations, counted under one lock."""

    def __init__(self, limits: Limits, log: Callable[[str], None]) -> None:
        self.limits = limits
        self.log = log
        self.lock = threading.Lock()
        self.connections: set[int] = set()
        self.admitted: dict[int, str] = {}  # connection key -> calling AE title

    def connect(self, key: int, peer: str) -> bool:
        with self.lock:
            if len(self.connections) >= self.limits.max_connections:
                refused = len(self.connections)
            else:
                self.connections.add(key)
                return True
        self.log(f"connection from {peer} refused: {refused} connections open (LISTEN_MAX_CONNECTIONS="
                 f"{self.limits.max_connections})")
        return False

    def admit(self, key: int, calling: str, peer: str) -> bool:
        with self.lock:
            mine = sum(1 for a in self.admitted.values() if a == calling)
            if len(self.admitted) >= self.limits.max_associations:
                why = (f"{len(self.admitted)} associations open (LISTEN_MAX_ASSOCIATIONS="
                       f"{self.limits.max_associations})")
            elif mine >= self.limits.max_per_caller:
                why = f"{mine} associations of this caller open (LISTEN_MAX_PER_CALLER={self.limits.max_per_caller})"
            else:
                self.admitted[key] = calling
                return True
        self.log(f"association from {shown(calling)} ({peer}) rejected: {why}; it may try again later")
        return False

    def release(self, key: int) -> None:
        with self.lock:
            self.connections.discard(key)
            self.admitted.pop(key, None)

    def open_counts(self) -> tuple[int, int]:
        with self.lock:
            return len(self.connections), len(self.admitted)


class PduGate:
    """Wraps an AssociationSocket's ``recv``: reads a PDU's header, judges it, then lets pynetdicom read on."""

    def __init__(self, assoc_socket: Any, key: int, peer: str, admission: Admission,
                 log: Callable[[str], None], open_ok: bool = True) -> None:
        self.sock = assoc_socket
        self.inner = assoc_socket.recv
        self.key = key
        self.peer = peer
        self.admission = admission
        self.log = log
        self.closed = not open_ok
        self.pending: tuple[int, int] | None = None  # (type, length) of the PDU whose body comes next
        self.requested = False  # an A-ASSOCIATE-RQ was seen
        self.calling = ""
        self.seen: set[int] = set()  # PDU types the peer sent (A-RELEASE-RQ: it finished; A-ABORT: it gave up)
        self.refusal = ""  # why the gate ended the connection, for the association's closing line
        if self.closed:
            self.refusal = "connection refused"
        assoc_socket.recv = self.recv

    def _close(self, pdu: bytes | None, why: str) -> bytearray:
        self.closed = True
        self.refusal = why
        raw = self.sock.socket
        if raw is not None:
            with contextlib.suppress(OSError):
                if pdu:
                    raw.sendall(pdu)
            with contextlib.suppress(OSError):
                raw.shutdown(socket.SHUT_RDWR)
        return bytearray()  # pynetdicom reads a short PDU: transport closed (Evt17), the association ends

    def recv(self, nr_bytes: int) -> bytearray:
        if self.closed:
            return bytearray()
        if self.pending is None:
            data = self.inner(nr_bytes)
            if nr_bytes == HEADER and len(data) == HEADER:
                pdu_type, _, length = struct.unpack(">BBL", bytes(data))
                limit = self.admission.limits.max_pdu if pdu_type == P_DATA_TF else CONTROL_PDU_LIMIT
                if length > limit:
                    who = f"{shown(self.calling)} ({self.peer})" if self.calling else self.peer
                    self.log(f"association from {who} aborted: a PDU (type 0x{pdu_type:02X}) of {length} bytes, "
                             f"more than the {limit} the listener accepts; nothing of it was kept")
                    return self._close(abort_pdu(), "aborted: PDU too long")
                self.pending = (pdu_type, length)
                self.seen.add(pdu_type)
            return data
        pdu_type, _ = self.pending
        self.pending = None
        body = self.inner(nr_bytes)
        if pdu_type == A_ASSOCIATE_RQ and not self.requested:
            self.requested = True
            if not self._admit(bytes(body)):
                return bytearray()
        return body

    def _admit(self, body: bytes) -> bool:
        if len(body) < 36:
            return True  # pynetdicom refuses what it cannot decode
        raw_calling = body[20:36].decode("latin-1")
        calling = raw_calling.strip(" \0")
        if not AE_RE.match(calling) or "\0" in raw_calling.rstrip("\0"):
            self.log(f"association from '{shown(raw_calling)}' ({self.peer}) rejected: its calling AE title is not a "
                     "DICOM AE title (1-16 printable characters, no backslash)")
            self._close(reject_pdu(*CALLING_AE_NOT_RECOGNISED), "rejected: invalid calling AE title")
            return False
        self.calling = calling
        if not self.admission.admit(self.key, calling, self.peer):
            self._close(reject_pdu(*LIMIT_EXCEEDED), "rejected: limit exceeded")
            return False
        return True
