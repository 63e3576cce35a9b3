"""Debian's Orthanc as the kit's local PACS: its configuration, and the few REST calls the kit makes."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

# dcmtk's own calling AE titles (storescu, findscu, echoscu): the docs' and the user's tools work as they are.
DEFAULT_ALLOWED_AETS = "STORESCU,FINDSCU,ECHOSCU"
# A known caller needs a port in Orthanc's modality list, also one that is no SCP: C-MOVE to it just fails.
NO_SCP_PORT = 104
ALL_COMMANDS = ("Echo", "Find", "Get", "Move", "Store")


@dataclass(frozen=True)
class Caller:
    """A calling AE title the PACS accepts, from the host it must call from."""

    aet: str
    host: str = "127.0.0.1"
    port: int = NO_SCP_PORT
    allow: tuple[str, ...] = ALL_COMMANDS

    def modality(self) -> dict:
        entry: dict = {"AET": self.aet, "Host": self.host, "Port": self.port}
        entry.update({f"Allow{c}": c in self.allow for c in ALL_COMMANDS})
        return entry


CALLER_RE = re.compile(r"^(?P<aet>[\x21-\x3f\x41-\x5b\x5d-\x7e]{1,16})(?:@(?P<host>[^:@\s]+)(?::(?P<port>\d{1,5}))?)?$")


def parse_callers(text: str) -> tuple[Caller, ...]:
    """PACS_ALLOWED_AETS: ``AET``, ``AET@host`` or ``AET@host:port`` entries, comma- or space-separated
    (host 127.0.0.1 when not given; the port only matters for C-MOVE to that AE). ValueError names a bad one."""
    out = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        m = CALLER_RE.match(item)
        if not m or (m["port"] and not 0 < int(m["port"]) < 65535):
            raise ValueError(f"PACS_ALLOWED_AETS entry {item!r} is not AET, AET@host or AET@host:port "
                             "(e.g. STORESCU or MYVIEWER@10.0.0.5:104)")
        out.append(Caller(m["aet"], m["host"] or "127.0.0.1", int(m["port"] or NO_SCP_PORT)))
    return tuple(out)


@dataclass(frozen=True)
class PacsConfig:
    run_dir: Path  # .run/pacs: config.json, db/, pid, state, orthanc.log
    dicom_port: int = 4242
    http_port: int = 8042
    aet: str = "ORTHANC"
    listen_aet: str = "ODK"  # the listener, registered as a modality Orthanc may send to
    listen_port: int = 11112
    allowed: tuple[Caller, ...] = parse_callers(DEFAULT_ALLOWED_AETS)  # PACS_ALLOWED_AETS: the user's tools
    results_aet: str = "ODK"  # DICOM_CALLING_AET: register-results stores its SEG objects as this AE
    tls: dict[str, object] | None = None  # PACS_TLS=1: Orthanc's DicomTls* options (kit.dicom.tls.orthanc_options)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def modalities(cfg: PacsConfig) -> dict[str, dict]:
    """Every AE the PACS knows: the listener (C-ECHO, C-STORE: what register-results sends; and Orthanc may
    C-MOVE to it), register-results' calling AE when it is another, and the user's tools (every command)."""
    known = {"odk": Caller(cfg.listen_aet, "127.0.0.1", cfg.listen_port, ("Echo", "Store")).modality()}
    if cfg.results_aet != cfg.listen_aet:
        known["register-results"] = Caller(cfg.results_aet, allow=("Echo", "Store")).modality()
    for caller in cfg.allowed:
        known[caller.aet.lower()] = caller.modality()
    return known


def orthanc_config(cfg: PacsConfig) -> dict:
    """The whole Orthanc configuration (nothing read from /etc/orthanc): storage under the run dir,
    REST and DICOM on the given ports, REST for this machine only. DICOM only from the AE titles it knows,
    each from its host (Orthanc rejects any other caller at association and logs it), and only when it calls
    this PACS by its own AE title."""
    db = cfg.run_dir.resolve() / "db"
    config = {
        "Name": "ODK local PACS",
        "StorageDirectory": str(db),
        "IndexDirectory": str(db),
        "HttpPort": cfg.http_port,
        "DicomPort": cfg.dicom_port,
        "DicomAet": cfg.aet,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": True,
        # Any of these true makes Orthanc accept the association of every caller.
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowFindWorklist": False,
        "DicomAlwaysAllowGet": False,
        "DicomAlwaysAllowMove": False,
        "DicomCheckModalityHost": True,
        "UnknownSopClassAccepted": False,
        "DicomModalities": modalities(cfg),
        "DicomModalitiesInDatabase": False,
        "Plugins": [],
        "StorageCompression": False,
        "HttpDescribeErrors": True,
    }
    if cfg.tls:
        config.update(cfg.tls)
    return config


def write_config(cfg: PacsConfig) -> Path:
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    (cfg.run_dir / "db").mkdir(exist_ok=True)
    path = cfg.run_dir / "config.json"
    path.write_text(json.dumps(orthanc_config(cfg), indent=2) + "\n", encoding="utf-8")
    return path


class Rest:
    """Orthanc's REST API on 127.0.0.1."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def get(self, path: str) -> object:
        with urllib.request.urlopen(self.url + path, timeout=self.timeout) as r:
            return json.loads(r.read())

    def get_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=self.timeout) as r:
            return r.read()

    def post(self, path: str, body: object) -> object:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=self.timeout) as r:
            return json.loads(r.read())

    def answers(self) -> bool:
        try:
            return isinstance(self.get("/system"), dict)
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def series(self, modality: str, study_uid: str | None = None) -> list[dict]:
        """Expanded series of this modality (optionally in one study), each with 'StudyInstanceUID' added."""
        query: dict[str, str] = {"Modality": modality}
        if study_uid:
            query["StudyInstanceUID"] = study_uid
        found = self.post("/tools/find", {"Level": "Series", "Query": query, "Expand": True})
        out = []
        for s in found if isinstance(found, list) else []:
            study = self.get(f"/studies/{s['ParentStudy']}")
            assert isinstance(study, dict)
            out.append({**s, "StudyInstanceUID": study["MainDicomTags"]["StudyInstanceUID"]})
        return out
