"""Folders the results viewer reads (real NIfTI files, reports of the operator's shape, pipeline logs, listener
jobs of the listener's shape) and a viewer server run in-process for a test."""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from kit.triton.readiness import free_ports
from kit.view.server import ViewConfig, ViewServer

ROOT = Path(__file__).resolve().parents[1]

AFFINE = np.diag([-2.0, -2.0, 3.0, 1.0])  # LPS, as the sample


def write_ct_and_seg(ct: Path | None, seg: Path | None, shape: tuple[int, int, int] = (24, 20, 8)) -> np.ndarray:
    """A small CT (int16 HU) and its label map (uint8: a liver block with a lesion inside)."""
    labels = np.zeros(shape, np.uint8)
    labels[4:14, 5:15, 2:6] = 1
    labels[8:11, 8:11, 3:5] = 2
    if ct is not None:
        ct.parent.mkdir(parents=True, exist_ok=True)
        hu = np.where(labels > 0, 60, -1000).astype(np.int16)
        nib.Nifti1Image(hu, AFFINE).to_filename(ct)
    if seg is not None:
        seg.parent.mkdir(parents=True, exist_ok=True)
        nib.Nifti1Image(labels, AFFINE).to_filename(seg)
    return labels


def write_report(folder: Path, name: str, input_path: str, liver: float = 123.4, lesion: float = 5.6) -> Path:
    """A report with the fields the operator writes (odk.LabelMapResult, as app/main.py writes it)."""
    folder.mkdir(parents=True, exist_ok=True)
    report = {
        "input": input_path, "shape": [24, 20, 8], "spacing_mm": [2.0, 2.0, 3.0], "dtype": "int16",
        "orientation": "LPS", "liver_volume_ml": liver, "lesion_volume_ml": lesion,
        "labels": {"background": {"label": 0, "voxels": 1, "volume_ml": 1.0},
                   "liver": {"label": 1, "voxels": 2, "volume_ml": liver - lesion},
                   "lesion": {"label": 2, "voxels": 3, "volume_ml": lesion}},
        "model": {"name": "segmentation_liver_v1", "version": "1", "spacing_mm": [2.5, 2.5, 2.5],
                  "hu_window": [-200.0, 300.0], "roi": [96, 96, 96], "label_nesting": "organ"},
        "transport": "grpc", "timings_s": {"read": 0.1, "inference": 1.5, "total": 2.0},
        "outputs": {"segmentation": f"{name}_seg.nii.gz", "overlay": f"{name}_overlay.png", "report": f"{name}.json"},
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def write_classes_report(folder: Path, name: str, input_path: str, volumes: dict[str, float]) -> Path:
    """A report of a model with other classes than liver/lesion: ``volumes`` is {class: mL} in label order."""
    path = write_report(folder, name, input_path)
    report = json.loads(path.read_text())
    for key in [k for k in report if k.endswith("_volume_ml")]:
        del report[key]
    report["labels"] = {"background": {"label": 0, "voxels": 1, "volume_ml": 1.0}}
    report["model"]["label_nesting"] = "none"  # separate structures: each volume is its own
    for value, (cls, ml) in enumerate(volumes.items(), start=1):
        report["labels"][cls] = {"label": value, "voxels": value, "volume_ml": ml}
        report[f"{cls}_volume_ml"] = ml
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def summary_table(rows: list[tuple[str, str, float, str]]) -> str:
    """kit.pipeline.run's closing summary table."""
    lines = [f"{'operator':<14}  {'status':<8}  {'time':>8}  detail"]
    lines += [f"{op:<14}  {status:<8}  {secs:>7.1f}s  {detail}" for op, status, secs, detail in rows]
    return "\n".join(lines) + "\n"


def listener_job(jobs_root: Path, job: str, state: str, *, reason: str = "", ops: list[tuple[str, str, float, str]]
                 | None = None, study: str | None = None) -> Path:
    """A job folder of the DICOM listener: status.json, job.log, input/, output/ (a pipeline's outputs)."""
    folder = jobs_root / job
    (folder / "input").mkdir(parents=True)
    (folder / "input" / "IM0001.dcm").write_bytes(b"\0" * 128 + b"DICM")
    status = {"job": job, "study_instance_uid": f"1.2.826.0.1.3680043.8.498.{len(job)}", "calling_aet": "PACS",
              "instances": 64, "state": state, "reason": reason, "received_at": "2026-12-03T10:00:00Z",
              "started_at": "2026-12-03T10:00:06Z" if state != "receiving" else None,
              "finished_at": "2026-12-03T10:01:00Z" if state in ("succeeded", "failed") else None,
              "pipeline": "def/liver-dicom-pipeline.yml"}
    (folder / "status.json").write_text(json.dumps(status))
    log = f"job {job}: {state}\n" + (summary_table(ops) if ops else "")
    (folder / "job.log").write_text(log)
    (folder / "output").mkdir()
    if study:
        ct = folder / "output" / "dicom-to-nifti" / "nifti" / f"{study}.nii.gz"
        seg_dir = folder / "output" / "segmentation" / "segmentation"
        write_ct_and_seg(ct, seg_dir / f"{study}_seg.nii.gz")
        write_report(seg_dir, study, f"/input/{study}.nii.gz")
    for op, status_, _secs, _detail in ops or []:
        logs = folder / "logs"
        logs.mkdir(exist_ok=True)
        (logs / f"{op}.log").write_text("INFO clara: stage x: done\n" if status_ == "ok" else "ERROR app: boom\n")
    return folder


@contextmanager
def serving(cfg: ViewConfig) -> Iterator[int]:
    """A viewer server on a free port (the OS picks it) in a thread; always shut down."""
    server = ViewServer(("127.0.0.1", 0), cfg)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def request(port: int, method: str, target: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One raw request: the target is sent exactly as given (no client-side normalisation of '..')."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, target, body=body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def get_json(port: int, target: str) -> dict:
    status, _headers, body = request(port, "GET", target)
    assert status == 200, (target, status, body)
    return json.loads(body)


@dataclass
class MakeView:
    proc: subprocess.Popen[str]
    url: str
    port: int
    run_dir: Path
    lines: list[str]


def make_env(run_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    env["ODK_RUN_DIR"] = str(run_dir)
    return env


@contextmanager
def make_view(output_dir: Path, input_dir: Path, run_dir: Path, timeout: float = 60) -> Iterator[MakeView]:
    """``make view`` on a free port, as a user starts it; stopped (its whole process group) at the end."""
    (port,) = free_ports(1)
    argv = ["make", "view", f"OUTPUT_DIR={output_dir}", f"INPUT_DIR={input_dir}", f"VIEW_PORT={port}"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=make_env(run_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines: list[str] = []
    try:
        url = wait_for_url(proc, port, lines, timeout)
        yield MakeView(proc, url, port, run_dir, lines)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stdout:
            proc.stdout.close()


def wait_for_url(proc: subprocess.Popen[str], port: int, lines: list[str], timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    want = f"http://127.0.0.1:{port}/"
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if not ready:
            continue
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if want in line:
            return want
    raise AssertionError(f"make view printed no URL {want}:\n" + "\n".join(lines))


def rest_of_output(view: MakeView, timeout: float = 15) -> str:
    """What make view printed after its URL, up to its exit."""
    out, _ = view.proc.communicate(timeout=timeout)
    return out
