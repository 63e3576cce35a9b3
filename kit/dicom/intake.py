"""What the listener checks of each received instance before it says "stored": its identity (the Type 1 UIDs
present, valid and the same as the C-STORE command's) and that its pixel data is all there.

The instance is read from the file pynetdicom streamed it to (``STORE_RECV_CHUNKED_DATASET``); large values
(the pixel data) are not loaded, only their declared lengths compared with what the file holds.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import RE_VALID_UID

# C-STORE failure statuses (PS3.4 Table B.2-1), as dcmtk's storescp answers them
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH = 0xA900  # the data set's SOP Class/Instance UID differ from the command's
CANNOT_UNDERSTAND = 0xC000

MAX_UID = 64
TYPE1_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
DEFER = 4096  # values longer than this are not read, only their position and length
IMAGE_PIXEL = ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel")


def valid_uid(value: str) -> bool:
    """PS3.5 9.1: at most 64 characters, digits and dots, no empty component, no leading zero in one."""
    return 0 < len(value) <= MAX_UID and RE_VALID_UID.match(value) is not None


def shown(value: object, limit: int = 80) -> str:
    """A received value as it may appear in a log line: control characters escaped, long ones cut."""
    text = str(value)
    cut = f"...({len(text)} characters)" if len(text) > limit else ""
    return text[:limit].encode("unicode_escape").decode("ascii") + cut


@dataclass(frozen=True)
class Received:
    """An instance that passed the checks."""
    study: str
    series: str
    sop: str
    sop_class: str
    patient_id: str
    digest: str  # SHA-256 of the received file: an identical re-send has the same


@dataclass(frozen=True)
class Refused:
    """An instance refused: the C-STORE status, what is wrong (one short phrase, the same for every instance with
    the same fault so that they can be counted), and the study it claimed when that one was readable."""
    status: int
    fault: str
    study: str = ""
    series: str = ""


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _uid(ds: pydicom.Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip("\0 ")


def _truncated(ds: pydicom.Dataset, size: int) -> str | None:
    """The first element whose declared length runs past the end of the file (values not read)."""
    tags = list(ds.keys())  # not iterating the data set: that would read the deferred values
    for tag in tags:
        raw = ds.get_item(tag, keep_deferred=True)
        length = getattr(raw, "length", None)
        tell = getattr(raw, "value_tell", None)
        if length is None or tell is None or length == UNDEFINED_LENGTH:
            continue
        if tell + length > size:
            return f"{pydicom.datadict.keyword_for_tag(tag) or tag} declares {length} bytes, {max(0, size - tell)} sent"
    return None


def _pixel_fault(ds: pydicom.Dataset, syntax: pydicom.uid.UID | None) -> str | None:
    raw = ds.get_item(PIXEL_DATA, keep_deferred=True)
    if raw is None:
        return None
    missing = [k for k in IMAGE_PIXEL if ds.get(k) in (None, "")]
    if missing:
        return f"pixel data without {', '.join(missing)}"
    length = getattr(raw, "length", None)
    if syntax is not None and syntax.is_encapsulated:
        return None  # fragments: pydicom read them to their delimiter, a cut one did not parse
    if length is None or length == UNDEFINED_LENGTH:
        return "native pixel data of undefined length"
    try:
        expected = get_expected_length(ds, "bytes")
    except (AttributeError, TypeError, ValueError) as exc:
        return f"pixel data whose size cannot be computed ({shown(exc, 60)})"
    if length < expected:
        return (f"pixel data shorter than Rows x Columns x samples x BitsAllocated/8 x frames ({length} bytes, "
                f"{expected} expected)")
    return None


def check_instance(path: Path, command_class: str, command_instance: str) -> Received | Refused:
    """The verdict on one received instance (its file as pynetdicom wrote it: file meta + data set)."""
    try:
        ds = pydicom.dcmread(path, defer_size=DEFER)
        size = os.path.getsize(path)
        uids = {k: _uid(ds, k) for k in TYPE1_UIDS}
        patient = str(ds.get("PatientID", "") or "")
        syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    except Exception as exc:  # truncated or garbled: pydicom's message names the element
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Refused(CANNOT_UNDERSTAND, f"unreadable data set ({shown(why, 100)})")
    study = uids["StudyInstanceUID"] if valid_uid(uids["StudyInstanceUID"]) else ""
    series = uids["SeriesInstanceUID"] if valid_uid(uids["SeriesInstanceUID"]) else ""
    for keyword, value in uids.items():
        if not value:
            return Refused(CANNOT_UNDERSTAND, f"no {keyword}", study, series)
    for keyword, value in uids.items():
        if not valid_uid(value):
            return Refused(CANNOT_UNDERSTAND, f"an invalid {keyword} (a UID is at most 64 digits and dots, no "
                           "leading zeros)", study, series)
    if uids["SOPInstanceUID"] != command_instance.strip("\0 ") or uids["SOPClassUID"] != command_class.strip("\0 "):
        return Refused(DATASET_DOES_NOT_MATCH, "a SOP Class/Instance UID other than the C-STORE command's", study,
                       series)
    fault = _truncated(ds, size) or _pixel_fault(ds, syntax)
    if fault:
        return Refused(CANNOT_UNDERSTAND, fault, study, series)
    return Received(study, series, uids["SOPInstanceUID"], uids["SOPClassUID"], patient, file_digest(path))
