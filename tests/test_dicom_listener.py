"""The DICOM listener (`make listen`) with real dcmtk clients: studies become jobs, failures keep the
received instances, an empty association makes no job, unknown callers are refused, stop leaves nothing.

The pipeline here is tests/data/listener/inventory-pipeline.yml (lists the received instances); the
liver pipeline through the listener into a real Orthanc is tests/test_dicom_e2e.py.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
from container_helpers import ROOT, make, one_error_line
from dicom_net_helpers import (
    echoscu,
    jobs,
    port_free,
    processes_mentioning,
    require_tools,
    running_listener,
    storescu,
    wait_jobs,
    write_ct_series,
)

from kit.triton.readiness import free_ports, port_in_use

PIPELINE = ROOT / "tests" / "data" / "listener" / "inventory-pipeline.yml"


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_tools()


def received(job: dict, listener_jobs: Path) -> list[Path]:
    return sorted((listener_jobs / job["job"] / "input").rglob("*.dcm"))


def test_two_studies_sent_concurrently_make_two_jobs(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    studies = {write_ct_series(tmp_path / "a", slices=12): "SCANNER_A",
               write_ct_series(tmp_path / "b", slices=9): "SCANNER_B"}
    with running_listener(tmp_path / "run", PIPELINE, pytestconfig) as listener:
        results: list[subprocess.CompletedProcess[str]] = []

        def send(folder: Path, aet: str) -> None:
            results.append(storescu(folder, listener.port, calling=aet))

        senders = [threading.Thread(target=send, args=(tmp_path / name, aet))
                   for name, aet in (("a", "SCANNER_A"), ("b", "SCANNER_B"))]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
        done = wait_jobs(listener, 2, timeout=120)
        status = make("listen-status", pytestconfig, env=listener.env)
    assert len(done) == 2, done
    assert {j["study_instance_uid"]: j["calling_aet"] for j in done} == studies
    for job in done:
        assert job["state"] == "succeeded", job
        assert set(job) == {"job", "study_instance_uid", "calling_aet", "instances", "state", "reason",
                            "received_at", "started_at", "finished_at", "pipeline", "supersedes", "superseded_by"}
        assert job["job"].startswith("ODK-dicom-inventory-"), job
        assert job["received_at"] <= job["started_at"] <= job["finished_at"]
        folder = listener.jobs_dir / job["job"]
        inventory = json.loads((folder / "output" / "inventory" / "inventory.json").read_text())
        assert {i["study"] for i in inventory} == {job["study_instance_uid"]}
        assert len(inventory) == job["instances"] == len(received(job, listener.jobs_dir))
        job_log = (folder / "job.log").read_text()
        assert "[inventory]" in job_log
        assert "inventory: " in job_log and "(warm start: forked by the fork server, pid " in job_log, job_log
    assert sorted(j["instances"] for j in done) == [9, 12]
    log = listener.log.read_text()
    for job in done:
        assert f"job {job['job']}: succeeded" in log, log
    for job in done:
        assert job["job"] in status.stdout and "succeeded" in status.stdout, status.stdout


def test_failed_job_keeps_its_instances_and_says_why(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    study = write_ct_series(tmp_path / "study", slices=5)
    with running_listener(tmp_path / "run", PIPELINE, pytestconfig, LISTEN_PARAMS="MIN_INSTANCES=6") as listener:
        assert storescu(tmp_path / "study", listener.port).returncode == 0
        (job,) = wait_jobs(listener, 1, timeout=120)
    assert job["state"] == "failed" and job["study_instance_uid"] == study, job
    assert "operator 'inventory'" in job["reason"], job
    assert len(received(job, listener.jobs_dir)) == 5 == job["instances"]
    job_log = (listener.jobs_dir / job["job"] / "job.log").read_text()
    assert "fewer than INVENTORY_MIN_INSTANCES=6" in job_log, job_log
    assert f"job {job['job']}: failed" in listener.log.read_text()


def test_echo_only_association_makes_no_job(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    no_triton = {"NVIDIA_TRITON_GRPCURI": "", "NVIDIA_TRITON_HTTPURI": ""}  # and no `make triton` in this run dir
    with running_listener(tmp_path / "run", PIPELINE, pytestconfig, extra_env=no_triton) as listener:
        echo = echoscu(listener.port)
        assert echo.returncode == 0, echo.stderr
        time.sleep(2.5)  # longer than LISTEN_IDLE_S=1
        assert jobs(listener) == []
        log = listener.log.read_text()
    assert "association from ECHOSCU (127.0.0.1) closed: no instances, no job" in log, log
    # It names the address the jobs' operators will use and why that one (env.list is not theirs); a server that
    # answers at localhost:8001 here would be what they use, and then there is nothing to warn about.
    if port_in_use(8001, "127.0.0.1"):
        assert "warning:" not in log, log
    else:
        assert (f"warning: no Triton runs at localhost:8001 (the operators' default: no 'make triton' recorded in "
                f"{tmp_path / 'run' / 'triton'}, NVIDIA_TRITON_GRPCURI not set; env.list is for 'make run-local' "
                "only): operators that need Triton will fail; start it with 'make triton'") in log, log


def test_calling_ae_not_in_allow_list_is_rejected(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    write_ct_series(tmp_path / "study", slices=3)
    with running_listener(tmp_path / "run", PIPELINE, pytestconfig, LISTEN_ALLOWED_AETS="GOODSCU,OTHERSCU") as listener:
        refused = storescu(tmp_path / "study", listener.port, calling="BADSCU")
        assert refused.returncode != 0
        assert "Association Rejected" in refused.stderr + refused.stdout, refused
        assert echoscu(listener.port, calling="GOODSCU").returncode == 0
        wrong_called = echoscu(listener.port, called="NOTODK", calling="GOODSCU")
        assert wrong_called.returncode != 0
        time.sleep(2.5)
        assert jobs(listener) == []
        log = listener.log.read_text()
        assert "association from BADSCU (127.0.0.1) rejected: calling AE not in the allow-list" in log, log


def test_listen_stop_ends_running_job_and_leaves_no_process_or_port(tmp_path: Path,
                                                                   pytestconfig: pytest.Config) -> None:
    write_ct_series(tmp_path / "study", slices=4)
    run_dir = tmp_path / "run"
    with running_listener(run_dir, PIPELINE, pytestconfig, LISTEN_PARAMS="HOLD_S=120") as listener:
        pid = int((run_dir / "listen" / "listen.pid").read_text())
        assert storescu(tmp_path / "study", listener.port).returncode == 0
        (job,) = wait_jobs(listener, 1, timeout=60, final=False)
        deadline = time.monotonic() + 30
        while not processes_mentioning("tests/dicom_inventory.py") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert jobs(listener)[0]["state"] == "running"
        assert processes_mentioning("tests/dicom_inventory.py"), "the job's operator never started"
        stopped = make("listen-stop", pytestconfig, env=listener.env)
        assert stopped.returncode == 0, stopped.stderr
    assert not Path(f"/proc/{pid}").exists()
    assert processes_mentioning(str(run_dir)) == []
    assert processes_mentioning("tests/dicom_inventory.py") == []
    assert processes_mentioning("kit.warm") == [], "the fork server the listener started is gone"
    assert port_free(listener.port)
    assert not (run_dir / "listen" / "listen.pid").exists()
    (job,) = jobs(listener)
    assert job["state"] == "failed" and "listener stopped while the job was running" in job["reason"], job
    assert len(received(job, listener.jobs_dir)) == 4
    status = make("listen-status", pytestconfig, env=listener.env)
    assert status.returncode != 0 and "not running" in status.stdout


def test_listen_refuses_a_taken_port_in_one_line(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    with running_listener(tmp_path / "run", PIPELINE, pytestconfig) as listener:
        second = make("listen", pytestconfig, env={"ODK_RUN_DIR": str(tmp_path / "other")},
                      LISTEN_PORT=str(listener.port), PIPELINE=str(PIPELINE), RUNTIME="host")
        line = one_error_line(second)
    assert "cannot listen on 127.0.0.1" in line and "LISTEN_PORT" in line, line
    assert processes_mentioning(str(tmp_path / "other")) == []


def test_listen_takes_several_destinations(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    """`make listen DICOM_DESTINATION=A@h:1,B@h:2`: the comma-separated list register-results reads."""
    first, second = free_ports(2)
    destinations = f"PACS_A@127.0.0.1:{first},PACS_B@127.0.0.1:{second}"
    with running_listener(tmp_path / "run", PIPELINE, pytestconfig, DICOM_DESTINATION=destinations) as listener:
        status = make("listen-status", pytestconfig, env=listener.env)
        log = listener.log.read_text()
    assert f"results to {destinations}" in log, log
    assert status.returncode == 0 and f"results to {destinations}" in status.stdout, status.stdout


@pytest.mark.parametrize(("variables", "expected"), [
    ({"DICOM_DESTINATION": "ORTHANC-4242"}, "DICOM_DESTINATION entry 'ORTHANC-4242' is not AET@host:port"),
    ({"LISTEN_PARAMS": "NOPE=1"}, "no parameter named NOPE"),
    ({"PIPELINE": "def/none.yml"}, "PIPELINE=def/none.yml is not a file"),
    ({"LISTEN_MAX_ASSOCIATIONS": "0"}, "LISTEN_MAX_ASSOCIATIONS must be at least 1, not 0"),
    ({"LISTEN_MAX_CONNECTIONS": "4"}, "LISTEN_MAX_CONNECTIONS (4) must be at least LISTEN_MAX_ASSOCIATIONS (16)"),
    ({"LISTEN_ACSE_TIMEOUT_S": "soon"}, "LISTEN_ACSE_TIMEOUT_S must be a number of seconds, not 'soon'"),
])
def test_listen_bad_settings_are_one_line(variables: dict[str, str], expected: str, tmp_path: Path,
                                          pytestconfig: pytest.Config) -> None:
    run_dir = tmp_path / "run"
    settings = {"LISTEN_PORT": str(free_ports(1)[0]), "PIPELINE": str(PIPELINE), "RUNTIME": "host", **variables}
    result = make("listen", pytestconfig, env={"ODK_RUN_DIR": str(run_dir)}, **settings)
    assert expected in one_error_line(result)
    assert processes_mentioning(str(run_dir)) == []
    assert not (run_dir / "listen" / "listen.pid").exists()
