"""Peers for the listener's door tests: pynetdicom SCUs that send, abort or hold associations, raw sockets that
speak (or do not speak) the upper layer protocol, and the listener's process figures (RSS, peak RSS)."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pydicom
from dicom_net_helpers import Listener
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage, SecondaryCaptureImageStorage, Verification

from kit.dicom.status import echo


def listener_pid(listener: Listener) -> int:
    return int((listener.run_dir / "listen" / "listen.pid").read_text())


def memory_kb(pid: int, field: str = "VmRSS") -> int:
    """VmRSS (resident now) or VmHWM (the peak since the process started) of a process, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def answers_echo(listener: Listener, calling: str = "ECHOCHECK") -> bool:
    return echo("127.0.0.1", listener.port, listener.aet, calling, timeout=10)


def scu(calling: str) -> AE:
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for cx in (CTImageStorage, SecondaryCaptureImageStorage):
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):  # one context each: files go as they are
            ae.add_requested_context(cx, syntax)
    ae.add_requested_context(Verification)
    return ae


def send(items: Sequence[pydicom.Dataset | Path], listener: Listener, calling: str = "PYSCU",
         abort: bool = False) -> list[int | None]:
    """C-STORE each dataset (or file, sent as its bytes are: command UIDs from its file meta) in one association;
    released at the end, or aborted with ``abort``. The statuses, None where no answer came."""
    assoc = scu(calling).associate("127.0.0.1", listener.port, ae_title=listener.aet)
    assert assoc.is_established, f"association from {calling} not accepted"
    statuses: list[int | None] = []
    chunked = _config.STORE_SEND_CHUNKED_DATASET
    try:
        for item in items:
            if not assoc.is_established:  # the listener aborted it
                statuses.append(None)
                continue
            _config.STORE_SEND_CHUNKED_DATASET = isinstance(item, Path)
            status = assoc.send_c_store(item)
            statuses.append(int(status.Status) if status else None)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = chunked
        if assoc.is_established:
            if abort:
                assoc.abort()
            else:
                assoc.release()
    return statuses


@contextmanager
def held_association(listener: Listener, calling: str) -> Iterator[object]:
    """An association that stays open (no data) until the block ends, then is released."""
    assoc = scu(calling).associate("127.0.0.1", listener.port, ae_title=listener.aet)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _item(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def associate_rq(called: bytes, calling: bytes, max_pdu: int = 16384) -> bytes:
    """A minimal A-ASSOCIATE-RQ PDU (Verification, Implicit VR LE) with AE titles given as raw bytes."""
    body = (struct.pack(">HH", 1, 0) + called.ljust(16)[:16] + calling.ljust(16)[:16] + b"\0" * 32
            + _item(0x10, b"1.2.840.10008.3.1.1.1")
            + _item(0x20, bytes([1, 0, 0, 0]) + _item(0x30, b"1.2.840.10008.1.1") + _item(0x40, b"1.2.840.10008.1.2"))
            + _item(0x50, _item(0x51, struct.pack(">L", max_pdu)) + _item(0x52, b"1.2.826.0.1.3680043.9.9")))
    return struct.pack(">BBL", 1, 0, len(body)) + body


def read_pdu(sock: socket.socket, timeout: float = 10) -> tuple[int, bytes]:
    """(type, body) of the next PDU; (0, b'') when the peer closed the connection."""
    sock.settimeout(timeout)
    header = b""
    while len(header) < 6:
        chunk = sock.recv(6 - len(header))
        if not chunk:
            return 0, b""
        header += chunk
    kind, _, length = struct.unpack(">BBL", header)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            break
        body += chunk
    return kind, body


def connect(listener: Listener) -> socket.socket:
    return socket.create_connection(("127.0.0.1", listener.port), timeout=10)


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True when the listener closes this (silent) connection within timeout seconds."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(4096):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False
