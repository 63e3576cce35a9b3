"""Helpers for the DICOM network tests: a real Orthanc (`make pacs`) and the listener (`make listen`) on
free ports with their own run dir, dcmtk clients, and small real CT series written with pydicom."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pydicom
import pytest
from container_helpers import check, make
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from requires import requires

from kit.dicom.jobs import SETTLED_STATES
from kit.dicom.orthanc import Rest
from kit.triton.readiness import free_ports, port_in_use

T = TypeVar("T")


def require_tools() -> None:
    """Orthanc and dcmtk (tests/requires.py's group 'dicom', installed by scripts/setup-dicom.sh)."""
    requires("dicom")


@dataclass(frozen=True)
class Pacs:
    dicom_port: int
    http_port: int
    aet: str
    rest: Rest

    @property
    def destination(self) -> str:
        return f"{self.aet}@127.0.0.1:{self.dicom_port}"


@dataclass(frozen=True)
class Listener:
    aet: str
    port: int
    run_dir: Path  # ODK_RUN_DIR (the listener's own is run_dir/listen)
    env: dict[str, str]

    @property
    def jobs_dir(self) -> Path:
        return self.run_dir / "listen" / "jobs"

    @property
    def log(self) -> Path:
        return self.run_dir / "listen" / "listen.log"


@contextmanager
def running_pacs(run_dir: Path, config: pytest.Config | None = None, listen_port: int = 11112,
                 ports: tuple[int, int] | None = None, **settings: str) -> Iterator[Pacs]:
    """`make pacs` on free ports (or the (DICOM, HTTP) ports given) in run_dir (more make variables in
    settings); `make pacs-stop` afterwards, whatever happens."""
    dicom_port, http_port = ports or free_ports(2)
    env = {"ODK_RUN_DIR": str(run_dir)}
    variables = {"PACS_DICOM_PORT": str(dicom_port), "PACS_HTTP_PORT": str(http_port),
                 "LISTEN_PORT": str(listen_port), **settings}
    try:
        check(make("pacs", config, env=env, timeout=60, **variables))
        yield Pacs(dicom_port, http_port, "ORTHANC", Rest(f"http://127.0.0.1:{http_port}"))
    finally:
        make("pacs-stop", config, env=env, timeout=60, **variables)


@contextmanager
def running_listener(run_dir: Path, pipeline: Path, config: pytest.Config | None = None,
                     extra_env: Mapping[str, str] | None = None, port: int | None = None,
                     **variables: str) -> Iterator[Listener]:
    """`make listen` (RUNTIME=host) on a free port in run_dir; `make listen-stop` afterwards."""
    port = port or free_ports(1)[0]
    env = {"ODK_RUN_DIR": str(run_dir), **(extra_env or {})}
    settings = {"LISTEN_PORT": str(port), "LISTEN_IDLE_S": "1", "PIPELINE": str(pipeline), "RUNTIME": "host",
                **variables}
    try:
        check(make("listen", config, env=env, timeout=60, **settings))
        yield Listener(settings.get("LISTEN_AET", "ODK"), port, run_dir, env)
    finally:
        make("listen-stop", config, env=env, timeout=60)


def triton_env(server: object) -> dict[str, str]:
    """The session's embedded Triton, as the pipeline's operators find it."""
    return {"NVIDIA_TRITON_GRPCURI": server.grpc_url,  # type: ignore[attr-defined]
            "NVIDIA_TRITON_HTTPURI": server.http_url.removeprefix("http://")}  # type: ignore[attr-defined]


def storescu(folder: Path, port: int, called: str = "ODK", calling: str = "STORESCU",
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """dcmtk storescu +sd: send every file of folder (recursively) in one association."""
    return subprocess.run(["storescu", "+sd", "+r", "-aet", calling, "-aec", called, "127.0.0.1", str(port),
                           str(folder)], capture_output=True, text=True, timeout=timeout, check=False)


def echoscu(port: int, called: str = "ODK", calling: str = "ECHOSCU") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["echoscu", "-aet", calling, "-aec", called, "127.0.0.1", str(port)],
                          capture_output=True, text=True, timeout=60, check=False)


def write_ct_series(folder: Path, slices: int = 8, size: int = 16) -> str:
    """A small, valid CT Image Storage series (one study) as files IM0000...; returns its StudyInstanceUID."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(0)
    for i in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientName, ds.PatientID, ds.InstanceNumber = "CT", "Test^Listener", "ODK-T", i + 1
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, 2.0 * i], [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 2.0
        ds.Rows = ds.Columns = size
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 1, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = rng.integers(0, 2000, (size, size), dtype=np.int16).tobytes()
        ds.save_as(folder / f"IM{i:04d}", enforce_file_format=True)
    return study


def copy_as_new_study(source: Path, target: Path) -> str:
    """Every DICOM file of source rewritten under target with new Study/Series/SOP Instance UIDs (one new UID
    per old one, so references inside the study stay consistent); returns the new StudyInstanceUID."""
    new: dict[str, str] = {}

    def renamed(uid: str) -> str:
        return new.setdefault(uid, generate_uid())

    study = ""
    for i, path in enumerate(sorted(p for p in source.rglob("*") if p.is_file())):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study = renamed(ds.StudyInstanceUID)
        ds.SeriesInstanceUID = renamed(ds.SeriesInstanceUID)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = renamed(ds.SOPInstanceUID)
        target.mkdir(parents=True, exist_ok=True)
        ds.save_as(target / f"IM{i:04d}.dcm", enforce_file_format=True)
    return study


def wait_for(predicate: Callable[[], T], timeout: float, what: str) -> T:
    """``predicate()`` once it is truthy, polled every 0.1 s; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def job_status(listener: Listener, name: str) -> dict:
    """The status.json of the listener's job ``name``."""
    return json.loads((listener.jobs_dir / name / "status.json").read_text())


def jobs(listener: Listener) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(listener.jobs_dir.glob("*/status.json"))]


def wait_jobs(listener: Listener, count: int, timeout: float = 300, final: bool = True) -> list[dict]:
    """The listener's jobs once `count` exist (and, with final, all have ended)."""
    deadline = time.monotonic() + timeout
    found: list[dict] = []
    while time.monotonic() < deadline:
        found = jobs(listener)
        if len(found) >= count and (not final or all(j["state"] in SETTLED_STATES for j in found)):
            return found
        time.sleep(0.2)
    log = listener.log.read_text() if listener.log.is_file() else "(no log)"
    raise AssertionError(f"expected {count} finished job(s), have {found}\n--- listener log\n{log}")


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain text (e.g. a test's run dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


def port_free(port: int) -> bool:
    return not port_in_use(port)

