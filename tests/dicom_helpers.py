"""Real DICOM files and tools for the DICOM tests: the sample series, a job folder of bad input beside a good
series, dciodvfy, dcmtk's storescp."""

from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import BasicTextSRStorage, generate_uid
from requires import needs

from kit.phantom import dicom as phantom_dicom
from kit.triton.readiness import free_ports

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CT = ROOT / "local" / "input" / "synthetic_phantom_001.nii.gz"
SAMPLE_TRUTH = ROOT / "tests" / "data" / "synthetic_phantom_001_truth.nii.gz"
# the pip wheel's binary, beside the virtualenv's python
DCM2NIIX = str(Path(sys.executable).with_name("dcm2niix"))
needs_tools = needs("dicom")  # dciodvfy, storescp, dcmcjpeg, dcmcjpls ... (tests/requires.py)


def write_sample(dest: Path, syntax: str = "explicit") -> list[Path]:
    """The sample study as a DICOM CT series (what `make phantoms` writes to local/input-dicom)."""
    return phantom_dicom.write_series(SAMPLE_CT, dest, syntax)


def operator_env(inputs: str, outputs: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVIDIA_", "TRITON_", "ODK_", "DICOM_"))}
    env.update({"NVIDIA_CLARA_INPUTPATHS": inputs, "NVIDIA_CLARA_OUTPUTPATHS": outputs,
                "NVIDIA_CLARA_NOSYNCLOCK": "TRUE"})
    env.update(extra)
    return env


def run_operator(module: str, inputs: str, outputs: str, timeout: float = 300,
                 **extra: str) -> subprocess.CompletedProcess[str]:
    """``python -u -m <module>`` under the driver, as the image runs it; stdout+stderr in .stdout."""
    return subprocess.run([sys.executable, "-u", "-m", module], cwd=ROOT, env=operator_env(inputs, outputs, **extra),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)


def dciodvfy_problems(path: Path) -> tuple[str, list[str]]:
    """dciodvfy's whole output and its Error / Warning lines."""
    proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False, timeout=120)
    text = proc.stdout + proc.stderr
    return text, [line for line in text.splitlines() if line.startswith(("Error", "Warning"))]


@contextmanager
def storescp(out_dir: Path, aet: str = "STORESCP", *options: str) -> Iterator[int]:
    """dcmtk's storescp on a free port, writing what it receives to ``out_dir``; always stopped."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (port,) = free_ports(1)
    proc = subprocess.Popen(["storescp", "-aet", aet, "--output-directory", str(out_dir), *options, str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"storescp exited: {proc.stdout.read() if proc.stdout else ''}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break  # listening (a refusing storescp answers no C-ECHO, so only the port is checked)
            except OSError:
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def rejecting_scp(aet: str = "REJECTS") -> Iterator[int]:
    """A Storage SCP on a free port that rejects every association (no calling AE title is allowed).

    dcmtk's ``storescp --refuse`` closes the connection right after its A-ASSOCIATE-RJ, and pynetdicom then
    reports the association as aborted instead of rejected now and then (11 to 26 times in 60 here); this
    peer waits for the caller to close, so a rejection always reads as one.
    """
    from pynetdicom import AE, AllStoragePresentationContexts

    ae = AE(ae_title=aet)
    ae.supported_contexts = AllStoragePresentationContexts
    ae.require_calling_aet = ["NOBODY-CALLS"]
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def load_series(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]


def save(ds: pydicom.Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def variant_series(datasets: list[pydicom.Dataset], description: str, n: int = 20) -> list[pydicom.Dataset]:
    """The first ``n`` slices as a new series of the same study."""
    series_uid = generate_uid()
    out = []
    for ds in datasets[:n]:
        ds = copy.deepcopy(ds)
        ds.SeriesInstanceUID = series_uid
        ds.SeriesDescription = description
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        out.append(ds)
    return out


def bad_folder(sample: Path, root: Path) -> dict[str, str]:
    """A job folder with one good series and every kind of bad input; returns name -> series UID / file."""
    good = load_series(sample)
    uids: dict[str, str] = {"good": good[0].SeriesInstanceUID}
    for ds in good:
        save(ds, root / "study" / "good" / f"IM{ds.InstanceNumber:05d}")  # no suffix, nested
    shutil.copy(next(sample.glob("*.dcm")), root / "copy-of-a-good-slice.dcm")  # the same instance twice

    missing = variant_series(good, "missing slice")
    del missing[7]
    dup = variant_series(good, "duplicate slice")
    extra = copy.deepcopy(dup[5])
    extra.SOPInstanceUID = extra.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dup.append(extra)
    orient = variant_series(good, "two orientations")
    for ds in orient[10:]:
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    loc = variant_series(good, "with localizer")
    scout = copy.deepcopy(loc[0])
    scout.SOPInstanceUID = scout.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    loc.append(scout)
    mr = variant_series(good, "an MR series")
    for ds in mr:
        ds.Modality = "MR"
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.MRImageStorage
    for name, series in (("missing", missing), ("duplicate", dup), ("orientations", orient), ("localizer", loc),
                         ("mr", mr)):
        uids[name] = series[0].SeriesInstanceUID
        for i, ds in enumerate(series):
            save(ds, root / name / f"{i:03d}.dcm")

    sr = pydicom.Dataset()
    sr.file_meta = pydicom.dataset.FileMetaDataset()
    sr.SOPClassUID = sr.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
    sr.SOPInstanceUID = sr.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    sr.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    sr.StudyInstanceUID, sr.SeriesInstanceUID, sr.Modality = good[0].StudyInstanceUID, generate_uid(), "SR"
    sr.PatientID = good[0].PatientID
    uids["sr"] = sr.SeriesInstanceUID
    save(sr, root / "report.dcm")

    (root / "corrupt.dcm").write_bytes(b"\0" * 128 + b"DICM" + np.random.default_rng(2).bytes(3000))
    (root / "notes.txt").write_text("not DICOM\n")
    truncated = (sample / "CT.0001.dcm").read_bytes()[:700]
    (root / "truncated.dcm").write_bytes(truncated)
    return uids
