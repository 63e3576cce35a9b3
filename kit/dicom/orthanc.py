"""Debian's Orthanc as the kit's local PACS: its configuration, and the few REST calls the kit makes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PacsConfig:
    run_dir: Path  # .run/pacs: config.json, db/, pid, state, orthanc.log
    dicom_port: int = 4242
    http_port: int = 8042
    aet: str = "ORTHANC"
    listen_aet: str = "ODK"  # the listener, registered as a modality Orthanc may send to
    listen_port: int = 11112

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def orthanc_config(cfg: PacsConfig) -> dict:
    """The whole Orthanc configuration (nothing read from /etc/orthanc): storage under the run dir,
    REST and DICOM on the given ports, REST for this machine only, the listener as modality 'odk'."""
    db = cfg.run_dir.resolve() / "db"
    return {
        "Name": "ODK local PACS",
        "StorageDirectory": str(db),
        "IndexDirectory": str(db),
        "HttpPort": cfg.http_port,
        "DicomPort": cfg.dicom_port,
        "DicomAet": cfg.aet,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowMove": True,
        "DicomModalities": {"odk": [cfg.listen_aet, "127.0.0.1", cfg.listen_port]},
        "Plugins": [],
        "StorageCompression": False,
        "HttpDescribeErrors": True,
    }


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
