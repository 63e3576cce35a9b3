"""The liver pipeline through the listener when things break, with real parts: dcmtk storescu, a real
Orthanc (`make pacs`), the session's embedded Triton (and one of its own to kill), signals.

- PACS down when the results are ready: register-results retries for DICOM_RETRY_S, the job is kept as
  delivery-failed with its SEG; once the PACS runs, `make listen-resend` stores it and the job succeeds.
- Triton gone mid-job: the reason is the segmentation operator's own error line; `make listen-retry` once
  Triton is back runs the job again from its kept instances and it succeeds.
- `kill -9` of the listener mid-job: the next `make listen` ends the orphaned pipeline (its recorded process
  group), runs the job again, and Orthanc holds exactly one SEG series.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import TypeVar

import pydicom
import pytest
from conftest import TritonServer
from container_helpers import ROOT, check, make, output_of
from dicom_net_helpers import (
    Listener,
    job_status,
    jobs,
    require_tools,
    running_listener,
    running_pacs,
    storescu,
    triton_env,
    wait_for,
    wait_jobs,
)

from kit.dicom import procgroup
from kit.dicom.seg_check import wait_new_seg
from kit.phantom.dicom import write_series
from kit.triton.readiness import free_ports

T = TypeVar("T")
PIPELINE = ROOT / "def" / "liver-dicom-pipeline.yml"
SAMPLE = ROOT / "local" / "input" / "synthetic_phantom_001.nii.gz"


@pytest.fixture(scope="module")
def sample_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools()
    folder = tmp_path_factory.mktemp("sample-dicom") / "synthetic_phantom_001"
    write_series(SAMPLE, folder)
    return folder


def job_at(listener: Listener, operator: str, timeout: float = 300) -> tuple[dict, procgroup.RunState]:
    """The running job and its recorded process group once `operator` has started in it."""
    def found() -> tuple[dict, procgroup.RunState] | None:
        for job in jobs(listener):
            folder = listener.jobs_dir / job["job"]
            rec = procgroup.recorded(folder)
            if job["state"] == "running" and rec and (folder / "logs" / f"{operator}.log").is_file():
                return job, rec
        return None
    return wait_for(found, timeout, f"a job running {operator}")


def group_alive(pgid: int) -> list[int]:
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            alive.append(int(entry.name))
    return alive


def test_pacs_down_keeps_the_results_then_resend_delivers(sample_series: Path, triton_server: TritonServer,
                                                          tmp_path: Path, pytestconfig: pytest.Config) -> None:
    study = pydicom.dcmread(next(sample_series.iterdir()), stop_before_pixels=True).StudyInstanceUID
    run_dir = tmp_path / "run"
    dicom_port, http_port, listen_port = free_ports(3)
    destination = f"ORTHANC@127.0.0.1:{dicom_port}"  # nothing listens there yet
    env = {**triton_env(triton_server), "DICOM_RETRY_S": "3", "DICOM_RETRY_DELAY_S": "0.5"}
    with running_listener(run_dir, PIPELINE, pytestconfig, extra_env=env, port=listen_port,
                          DICOM_DESTINATION=destination) as listener:
        assert storescu(sample_series, listener.port).returncode == 0
        (job,) = wait_jobs(listener, 1, timeout=600)
        folder = listener.jobs_dir / job["job"]
        assert job["state"] == "delivery-failed", (job, (folder / "job.log").read_text())
        assert job["reason"].startswith("operator 'register-results' (exit 1): "), job
        assert f"{destination} is unreachable" in job["reason"], job
        assert f"'make listen-resend JOB={job['job']}'" in job["reason"], job
        (kept,) = (folder / "output" / "dicom-seg-writer" / "seg").glob("*.dcm")  # the SEG, kept
        register_log = (folder / "logs" / "register-results.log").read_text()
        assert register_log.count("attempt ") >= 2, register_log  # retried with backoff, within DICOM_RETRY_S

        with running_pacs(run_dir, pytestconfig, listen_port=listen_port, ports=(dicom_port, http_port)) as pacs:
            assert pacs.rest.series("SEG") == []
            resent = make("listen-resend", pytestconfig, env=listener.env, JOB=job["job"])
            assert resent.returncode == 0, output_of(resent)
            assert f"results delivered to {destination}" in resent.stderr, output_of(resent)
            seg = wait_new_seg(pacs.rest, str(study), set(), timeout=30)
            seg_series = pacs.rest.series("SEG")
            after = job_status(listener, job["job"])
    assert len(seg_series) == 1, seg_series
    assert seg.dataset.SOPInstanceUID == pydicom.dcmread(kept, stop_before_pixels=True).SOPInstanceUID
    assert after["state"] == "succeeded" and "make listen-resend" in after["reason"], after
    report = json.loads((folder / "output" / "register-results" / "report" / "register-report.json").read_text())
    assert [d["ok"] for d in report["destinations"]] == [True], report


def test_triton_gone_mid_job_reason_then_retry_succeeds(sample_series: Path, triton_models_dir: Path,
                                                        tmp_path: Path, pytestconfig: pytest.Config) -> None:
    from kit.triton.embedded import start, stop
    from kit.triton.state import Ports

    triton_dir = tmp_path / "triton-own"
    ports = Ports(*free_ports(3))
    try:
        handle = start(triton_models_dir, ports, triton_dir, timeout=180)
        env = {"NVIDIA_TRITON_GRPCURI": handle.grpc_url, "NVIDIA_TRITON_HTTPURI": handle.http_url.removeprefix("http://"),
               "TRITON_READY_TIMEOUT": "3"}
        with running_listener(tmp_path / "run", PIPELINE, pytestconfig, extra_env=env) as listener:
            assert storescu(sample_series, listener.port).returncode == 0
            job, rec = job_at(listener, "dicom-reader")
            os.killpg(rec.pgid, signal.SIGSTOP)  # hold the pipeline while its Triton goes away
            try:
                assert stop(triton_dir)
            finally:
                os.killpg(rec.pgid, signal.SIGCONT)
            (failed,) = wait_jobs(listener, 1, timeout=300)
            folder = listener.jobs_dir / job["job"]
            own = [line for line in (folder / "logs" / "segmentation.log").read_text().splitlines()
                   if "ERROR" in line or "error" in line]
            assert failed["state"] == "failed", failed
            assert failed["reason"].startswith("operator 'segmentation' (exit 1): "), failed
            assert own and own[-1].split(": ", 1)[-1] in failed["reason"], (own, failed)
            assert "Triton" in failed["reason"] and "failed; logs in" not in failed["reason"], failed

            start(triton_models_dir, ports, triton_dir, timeout=180)  # Triton is back, same address
            retried = make("listen-retry", pytestconfig, env=listener.env, JOB=job["job"])
            check(retried)
            assert "the running listener" in retried.stderr, output_of(retried)
            wait_for(lambda: job_status(listener, job["job"])["state"] in ("succeeded", "failed"), 300, "the retry")
            done = job_status(listener, job["job"])
            log = listener.log.read_text()
    finally:
        stop(triton_dir)
    assert done["state"] == "succeeded", (done, (folder / "job.log").read_text()[-3000:])
    assert list((folder / "output" / "dicom-seg-writer" / "seg").glob("*.dcm"))
    assert f"job {job['job']}: queued again by 'make listen-retry'" in log, log


def test_listener_killed_mid_job_restart_ends_orphan_and_reruns_once(sample_series: Path,
                                                                     triton_server: TritonServer, tmp_path: Path,
                                                                     pytestconfig: pytest.Config) -> None:
    study = pydicom.dcmread(next(sample_series.iterdir()), stop_before_pixels=True).StudyInstanceUID
    run_dir = tmp_path / "run"
    listen_port = free_ports(1)[0]
    settings = {"LISTEN_PORT": str(listen_port), "LISTEN_IDLE_S": "1", "PIPELINE": str(PIPELINE), "RUNTIME": "host"}
    with running_pacs(run_dir, pytestconfig, listen_port=listen_port) as pacs, \
            running_listener(run_dir, PIPELINE, pytestconfig, extra_env=triton_env(triton_server),
                             port=listen_port) as listener:
        pid = int((run_dir / "listen" / "listen.pid").read_text())
        assert storescu(sample_series, listener.port).returncode == 0
        job, rec = job_at(listener, "segmentation")
        os.killpg(rec.pgid, signal.SIGSTOP)  # the pipeline held mid-job: it cannot finish on its own meanwhile
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()[-60:],
                 10, "the listener to die")
        orphans = group_alive(rec.pgid)
        assert orphans, "the pipeline died with the listener; nothing to recover"
        assert job_status(listener, job["job"])["state"] == "running"

        check(make("listen", pytestconfig, env=listener.env, **settings))
        assert group_alive(rec.pgid) == [], "the orphaned pipeline still runs after the restart"
        left = [p.name for pid in orphans for p in Path("/dev/shm").glob(f"odk_{pid}_*")]
        assert left == [], f"the killed operator's shared memory is left: {left}"
        wait_for(lambda: job_status(listener, job["job"])["state"] in ("succeeded", "failed", "delivery-failed"),
                 600, "the job to run again")
        done = job_status(listener, job["job"])
        seg = wait_new_seg(pacs.rest, str(study), set(), timeout=30)
        seg_series = pacs.rest.series("SEG")
        log = listener.log.read_text()
    assert done["state"] == "succeeded", done
    assert len(seg_series) == 1 and seg_series[0]["ID"] == seg.orthanc_id, seg_series
    assert f"job {job['job']}: ended {len(orphans)} process(es) of its pipeline (process group {rec.pgid})" in log
    assert f"job {job['job']}: interrupted while running; queued to run again" in log, log
    assert len([j for j in jobs(listener) if j["study_instance_uid"] == study]) == 1
