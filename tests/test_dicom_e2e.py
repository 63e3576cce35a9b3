"""The DICOM chain end to end with real parts: dcmtk storescu sends the sample CT series to `make listen`,
the listener runs def/liver-dicom-pipeline.yml on the session's Triton, and the SEG arrives in a real
Orthanc (`make pacs`), checked through Orthanc's REST API; then `make demo-dicom` once, on its own ports, and
`make pacs-status` with the PACS running and stopped."""

from __future__ import annotations

import io
import os
import re
import subprocess
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import TritonServer
from container_helpers import ROOT, make, output_of
from dicom_net_helpers import (
    jobs,
    port_free,
    processes_mentioning,
    require_tools,
    running_listener,
    running_pacs,
    storescu,
    triton_env,
    wait_jobs,
    write_ct_series,
)

from kit.dicom.seg_check import labels_on_grid, seg_label_image, truth_dice, wait_new_seg
from kit.phantom.dicom import write_series
from kit.triton.readiness import free_ports

PIPELINE = ROOT / "def" / "liver-dicom-pipeline.yml"
SAMPLE = ROOT / "local" / "input" / "synthetic_phantom_001.nii.gz"
TRUTH = ROOT / "tests" / "data" / "synthetic_phantom_001_truth.nii.gz"


@pytest.fixture(scope="module")
def sample_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools()
    folder = tmp_path_factory.mktemp("sample-dicom") / "synthetic_phantom_001"
    write_series(SAMPLE, folder)
    return folder


def test_storescu_to_listener_seg_arrives_in_orthanc(sample_series: Path, triton_server: TritonServer,
                                                     tmp_path: Path, pytestconfig: pytest.Config) -> None:
    ct = pydicom.dcmread(next(sample_series.iterdir()), stop_before_pixels=True)
    run_dir = tmp_path / "run"
    listen_port = free_ports(1)[0]
    with running_pacs(run_dir, pytestconfig, listen_port=listen_port) as pacs, \
            running_listener(run_dir, PIPELINE, pytestconfig, extra_env=triton_env(triton_server),
                             port=listen_port) as listener:
        assert f"results to {pacs.destination}" in listener.log.read_text()  # the running `make pacs`
        sent = storescu(sample_series, listener.port)
        assert sent.returncode == 0, sent.stderr
        (job,) = wait_jobs(listener, 1, timeout=600)
        assert job["state"] == "succeeded", (job, (listener.jobs_dir / job["job"] / "job.log").read_text())
        seg = wait_new_seg(pacs.rest, str(ct.StudyInstanceUID), set(), timeout=30)
        seg_series = pacs.rest.series("SEG")
        ct_series = pacs.rest.series("CT")

    # `make pacs-stop` / `make listen-stop` waited for their processes: nothing left of this run dir, ports free.
    assert processes_mentioning(str(run_dir)) == []
    assert all(port_free(p) for p in (pacs.dicom_port, pacs.http_port, listener.port))

    # Orthanc held exactly one SEG series, in the CT's study, referencing the CT series.
    assert len(seg_series) == 1 and seg_series[0]["StudyInstanceUID"] == ct.StudyInstanceUID, seg_series
    assert ct_series == [], "the PACS got only the result, not the CT"
    assert seg.referenced_series == (str(ct.SeriesInstanceUID),)
    assert seg.dataset.StudyInstanceUID == ct.StudyInstanceUID
    assert seg.dataset.FrameOfReferenceUID == ct.FrameOfReferenceUID
    assert seg.series_uid != ct.SeriesInstanceUID
    assert [s.SegmentLabel for s in seg.dataset.SegmentSequence] == ["liver", "lesion"]

    # The job folder: received instances, the pipeline's outputs, its log; the SEG equals the label map.
    folder = listener.jobs_dir / job["job"]
    assert job["instances"] == 64 == len(list((folder / "input").rglob("*.dcm")))
    assert job["calling_aet"] == "STORESCU" and job["study_instance_uid"] == ct.StudyInstanceUID
    (label_map,) = (folder / "output" / "segmentation" / "segmentation").glob("*_seg.nii.gz")
    expected = nib.load(str(label_map))
    got = labels_on_grid(seg_label_image(seg.dataset), expected)
    assert np.array_equal(got, np.asanyarray(expected.dataobj)), "SEG in Orthanc != the operator's label map"
    liver, _lesion = truth_dice(seg.dataset, TRUTH)
    assert liver >= 0.9, liver
    log = listener.log.read_text()
    assert f"job {job['job']}: succeeded" in log, log


def test_make_demo_dicom(tmp_path: Path) -> None:
    require_tools()
    names = ("PACS_DICOM_PORT", "PACS_HTTP_PORT", "LISTEN_PORT", "TRITON_HTTP_PORT", "TRITON_GRPC_PORT",
             "TRITON_METRICS_PORT")
    ports = dict(zip(names, map(str, free_ports(len(names))), strict=True))
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NVIDIA_TRITON_")}
    env.update(ports, ODK_RUN_DIR=str(run_dir), TRITON_MODE="embedded", DICOM_SERIES=str(tmp_path / "series"))
    proc = subprocess.run(["make", "-C", str(ROOT), "demo-dicom"], env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    log = output_of(proc)
    assert proc.returncode == 0, log
    assert len(list((tmp_path / "series").glob("*.dcm"))) == 64, log  # written from the sample NIfTI
    study = pydicom.dcmread(next((tmp_path / "series").iterdir()), stop_before_pixels=True).StudyInstanceUID
    assert f"SEG in the PACS: study {study}" in proc.stdout, log
    assert re.search(r"SEG series  [0-9.]+ \(2 segment\(s\): liver, lesion\)", proc.stdout), log
    assert f"http://127.0.0.1:{ports['PACS_HTTP_PORT']}/app/explorer.html#series?uuid=" in proc.stdout, log
    dice = re.search(r"Dice vs truth: liver ([0-9.]+)", proc.stdout)
    assert dice and float(dice.group(1)) >= 0.9, log
    (job,) = [j for j in jobs_in(run_dir) if j["study_instance_uid"] == study]
    assert job["state"] == "succeeded" and job["calling_aet"] == "ODKDEMO"
    # What it started, it stopped: no process of this run dir, no port taken, no pid files.
    assert processes_mentioning(str(run_dir)) == []
    assert all(port_free(int(p)) for p in ports.values()), log
    for pid in ("pacs/pacs.pid", "listen/listen.pid", "triton/triton.pid"):
        assert not (run_dir / pid).exists(), pid
    # again: the PACS holds the study's SEG already (the listener would make no new job of it): it is shown
    again = subprocess.run(["make", "-C", str(ROOT), "demo-dicom"], env=env, capture_output=True, text=True,
                           timeout=900, check=False)
    log = output_of(again)
    assert again.returncode == 0, log
    assert "the PACS already holds a SEG of this study (sent before); not sending it again" in log, log
    assert f"SEG in the PACS: study {study}" in again.stdout, log
    assert len([j for j in jobs_in(run_dir) if j["study_instance_uid"] == study]) == 1
    assert processes_mentioning(str(run_dir)) == []


def jobs_in(run_dir: Path) -> list[dict]:
    from dicom_net_helpers import Listener

    return jobs(Listener("ODK", 0, run_dir, {}))


def test_liver_job_without_triton_fails_and_keeps_the_study(sample_series: Path, tmp_path: Path,
                                                            pytestconfig: pytest.Config) -> None:
    closed_grpc, closed_http = free_ports(2)  # nothing listens there
    env = {"NVIDIA_TRITON_GRPCURI": f"127.0.0.1:{closed_grpc}", "NVIDIA_TRITON_HTTPURI": f"127.0.0.1:{closed_http}",
           "TRITON_READY_TIMEOUT": "2"}
    with running_listener(tmp_path / "run", PIPELINE, pytestconfig, extra_env=env) as listener:
        assert f"the Triton at 127.0.0.1:{closed_http} does not answer" in listener.log.read_text()
        assert storescu(sample_series, listener.port).returncode == 0
        (job,) = wait_jobs(listener, 1, timeout=300)
        log = listener.log.read_text()
    assert job["state"] == "failed", job
    assert job["reason"].startswith("operator 'segmentation' (exit 1): "), job  # with its own error line
    assert "cannot reach Triton" in job["reason"], job
    folder = listener.jobs_dir / job["job"]
    assert len(list((folder / "input").rglob("*.dcm"))) == 64 == job["instances"]
    assert list((folder / "output" / "dicom-reader" / "volumes").glob("*.dicom.json"))  # the reader did its part
    assert not (folder / "output" / "dicom-seg-writer").exists()  # skipped: nothing half-written
    assert "cannot reach Triton" in (folder / "job.log").read_text()
    assert f"job {job['job']}: failed after" in log and job["reason"] in log, log


def own_lines(text: str) -> list[str]:
    """What a target printed itself (make's own 'Entering directory' lines of `make -C` aside)."""
    return [line for line in text.splitlines() if not line.startswith("make")]


def test_pacs_status_is_one_line_running_and_stopped(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    require_tools()
    run_dir = tmp_path / "run"
    env = {"ODK_RUN_DIR": str(run_dir)}
    write_ct_series(tmp_path / "study", slices=3)
    with running_pacs(run_dir, pytestconfig) as pacs:
        pid = (run_dir / "pacs" / "pacs.pid").read_text().strip()
        sent = storescu(tmp_path / "study", pacs.dicom_port, called=pacs.aet)
        assert sent.returncode == 0, sent.stderr
        up = make("pacs-status", pytestconfig, env=env)
    down = make("pacs-status", pytestconfig, env=env)
    assert up.returncode == 0 and not own_lines(up.stderr), output_of(up)
    (line,) = own_lines(up.stdout)
    for part in (f"Orthanc pid {pid}", f"AE {pacs.aet}", f"DICOM 127.0.0.1:{pacs.dicom_port}",
                 f"http://127.0.0.1:{pacs.http_port}/app/explorer.html", "1 studies, 1 series, 3 instances"):
        assert part in line, line
    assert down.returncode != 0 and not own_lines(down.stderr), output_of(down)  # make's own 'Error 3' aside
    (line,) = own_lines(down.stdout)
    assert line.startswith("pacs: not running") and "start it with 'make pacs'" in line, line


def test_partial_sends_publish_no_partial_seg_and_a_rerun_replaces_it(
        sample_series: Path, triton_server: TritonServer, tmp_path: Path, pytestconfig: pytest.Config) -> None:
    """The liver pipeline into a real Orthanc: a study whose association was aborted reaches the PACS not at all
    (its job is held); a sender that paused past LISTEN_IDLE_S gets one SEG series, the re-run's instance (on all
    64 slices) beside the first; the whole study sent again adds nothing."""
    from dicom_door_helpers import send
    from dicom_net_helpers import copy_as_new_study

    aborted_study = copy_as_new_study(sample_series, tmp_path / "other")
    files = sorted(sample_series.glob("*.dcm"))
    first, rest = tmp_path / "first", tmp_path / "rest"
    for folder, part in ((first, files[:40]), (rest, files[40:])):
        folder.mkdir()
        for f in part:
            os.link(f, folder / f.name)
    ct = pydicom.dcmread(files[0], stop_before_pixels=True)
    run_dir = tmp_path / "run"
    listen_port = free_ports(1)[0]

    def of(study: str, states: tuple[str, ...], count: int, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = sorted((j for j in jobs(listener) if j["study_instance_uid"] == study),
                           key=lambda j: j["received_at"])
            if len(found) >= count and all(j["state"] in states for j in found):
                return found
            time.sleep(0.2)
        raise AssertionError(f"{study}: {jobs(listener)}\n{listener.log.read_text()}")

    with running_pacs(run_dir, pytestconfig, listen_port=listen_port) as pacs, \
            running_listener(run_dir, PIPELINE, pytestconfig, extra_env=triton_env(triton_server),
                             port=listen_port) as listener:
        other = sorted((tmp_path / "other").glob("*.dcm"))[:40]
        assert send(other, listener, calling="ABORTS", abort=True) == [0] * 40
        of(aborted_study, ("incomplete",), 1, 60)
        assert storescu(first, listener.port, calling="PAUSES").returncode == 0
        of(str(ct.StudyInstanceUID), ("queued", "running", "succeeded"), 1, 60)
        assert storescu(rest, listener.port, calling="PAUSES").returncode == 0
        done = of(str(ct.StudyInstanceUID), ("succeeded", "failed"), 2, 600)
        assert [j["state"] for j in done] == ["succeeded"] * 2, done
        deadline = time.monotonic() + 30
        while sum(len(s.get("Instances", [])) for s in pacs.rest.series("SEG")) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert storescu(sample_series, listener.port, calling="PAUSES").returncode == 0  # identical: nothing new
        time.sleep(3)
        after = jobs(listener)
        seg_series = pacs.rest.series("SEG")
        segs = [pydicom.dcmread(io.BytesIO(pacs.rest.get_bytes(f"/instances/{i}/file")), stop_before_pixels=True)
                for s in seg_series for i in s["Instances"]]
    assert len(after) == 3, after  # the held one and the study's two
    assert [j["state"] for j in after if j["study_instance_uid"] == aborted_study] == ["incomplete"]
    assert len(seg_series) == 1 and seg_series[0]["StudyInstanceUID"] == ct.StudyInstanceUID, seg_series
    # the partial result and the one that replaces it, in one series: 40 and 64 source slices referenced
    assert sorted(len(ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence) for ds in segs) == [40, 64]
