"""DICOM TLS end to end with real parts: dcmtk `storescu +tls` sends the sample CT series to `make listen` with
LISTEN_TLS_CERT/KEY/CA (client certificates required), the pipeline runs on the session's Triton, and
register-results sends the SEG over TLS (a destination marked `?tls`) to Orthanc with DICOM TLS
(`make pacs PACS_TLS=1`). A plain client to the TLS port, and a client whose certificate comes from
another CA, are refused with one line each in the listener's log. Certificates are made here with openssl
(kit/dicom/tls.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest
from conftest import TritonServer
from container_helpers import ROOT
from dicom_net_helpers import jobs, require_tools, running_listener, running_pacs, storescu, triton_env, wait_jobs
from requires import requires

from kit.dicom.seg_check import wait_new_seg
from kit.dicom.tls import listener_tls, make_certs
from kit.phantom.dicom import write_series
from kit.triton.readiness import free_ports
from odk import ConfigError
from odk.dicom import parse_destination

PIPELINE = ROOT / "def" / "liver-dicom-pipeline.yml"
SAMPLE = ROOT / "local" / "input" / "synthetic_phantom_001.nii.gz"


def storescu_tls(folder: Path, port: int, tls: Path, who: str, called: str = "ODK") -> subprocess.CompletedProcess:
    """dcmtk storescu over TLS with the certificate ``who`` (client or stranger), trusting the kit's CA."""
    return subprocess.run(["storescu", "+tls", str(tls / f"{who}.key"), str(tls / f"{who}.crt"), "+cf",
                           str(tls / "ca.crt"), "+sd", "+r", "-aet", "STORESCU", "-aec", called, "127.0.0.1",
                           str(port), str(folder)], capture_output=True, text=True, timeout=300, check=False)


def new_lines(log: Path, start: int) -> list[str]:
    return log.read_text()[start:].splitlines()


def test_storescu_tls_to_listener_to_orthanc_tls(triton_server: TritonServer, tmp_path: Path,
                                                   pytestconfig: pytest.Config) -> None:
    require_tools()
    requires("openssl")
    series = tmp_path / "series"
    write_series(SAMPLE, series)
    ct = pydicom.dcmread(next(series.iterdir()), stop_before_pixels=True)
    run_dir = tmp_path / "run"
    tls = make_certs(run_dir / "tls")  # what `make pacs PACS_TLS=1` uses too (ODK_RUN_DIR/tls)
    listen_port = free_ports(1)[0]
    env = {**triton_env(triton_server),
           "LISTEN_TLS_CERT": str(tls / "server.crt"), "LISTEN_TLS_KEY": str(tls / "server.key"),
           "LISTEN_TLS_CA": str(tls / "ca.crt"),
           "DICOM_TLS_CA": str(tls / "ca.crt"), "DICOM_TLS_CERT": str(tls / "client.crt"),
           "DICOM_TLS_KEY": str(tls / "client.key")}
    with running_pacs(run_dir, pytestconfig, listen_port=listen_port, PACS_TLS="1") as pacs, \
            running_listener(run_dir, PIPELINE, pytestconfig, extra_env=env, port=listen_port) as listener:
        log = listener.log.read_text()
        assert f"results to {pacs.destination}?tls" in log, log  # the running `make pacs`, with its TLS
        assert "DICOM TLS only on" in log and "client certificates from the CA" in log, log

        # Refused: a plain client, and one whose certificate another CA signed; one line each, no job.
        mark = len(listener.log.read_text())
        plain = storescu(series, listener.port)
        assert plain.returncode != 0
        refused = [x for x in new_lines(listener.log, mark) if "refused" in x]
        assert len(refused) == 1 and "TLS connection from 127.0.0.1:" in refused[0], refused
        assert refused[0].endswith("refused: not a TLS client (plain DICOM to a TLS port?)"), refused
        mark = len(listener.log.read_text())
        stranger = storescu_tls(series, listener.port, tls, "stranger")
        assert stranger.returncode != 0
        refused = [x for x in new_lines(listener.log, mark) if "refused" in x]
        assert len(refused) == 1, refused
        assert refused[0].endswith("refused: its certificate is not signed by a CA of LISTEN_TLS_CA"), refused
        assert jobs(listener) == []

        # Orthanc with DICOM TLS refuses a plain client too.
        assert storescu(series, pacs.dicom_port, called=pacs.aet).returncode != 0

        # The real chain: storescu +tls -> listener -> pipeline -> register-results over TLS -> Orthanc.
        sent = storescu_tls(series, listener.port, tls, "client")
        assert sent.returncode == 0, sent.stderr
        (job,) = wait_jobs(listener, 1, timeout=600)
        job_log = (listener.jobs_dir / job["job"] / "job.log").read_text()
        assert job["state"] == "succeeded", (job, job_log)
        seg = wait_new_seg(pacs.rest, str(ct.StudyInstanceUID), set(), timeout=30)
        assert [s.SegmentLabel for s in seg.dataset.SegmentSequence] == ["liver", "lesion"]
        report = next((listener.jobs_dir / job["job"] / "output").rglob("register-report.json")).read_text()
        assert f'"destination": "{pacs.destination}?tls"' in report, report
    assert "TLS error" in (run_dir / "pacs" / "orthanc.log").read_text()  # Orthanc's own line for the plain one


def test_tls_settings_are_checked(tmp_path: Path) -> None:
    requires("openssl")
    tls = make_certs(tmp_path / "tls")
    assert parse_destination("ORTHANC@127.0.0.1:4242?tls").tls
    assert str(parse_destination("ORTHANC@pacs:4242?tls")) == "ORTHANC@pacs:4242?tls"
    assert not parse_destination("ORTHANC@127.0.0.1:4242").tls
    with pytest.raises(ConfigError, match="go together"):
        listener_tls({"LISTEN_TLS_CERT": str(tls / "server.crt")})
    with pytest.raises(ConfigError, match="LISTEN_TLS_CA=/nonexistent is not a file"):
        listener_tls({"LISTEN_TLS_CERT": str(tls / "server.crt"), "LISTEN_TLS_KEY": str(tls / "server.key"),
                      "LISTEN_TLS_CA": "/nonexistent"})
    with pytest.raises(ConfigError, match="cannot use the TLS files"):
        listener_tls({"LISTEN_TLS_CERT": str(tls / "server.crt"), "LISTEN_TLS_KEY": str(tls / "client.key")}
                     ).context()  # a key that is not the certificate's
    assert listener_tls({}) is None
    made = {p.name: p.stat().st_mtime_ns for p in tls.iterdir()}
    make_certs(tls)  # made once: a second call changes nothing
    assert {p.name: p.stat().st_mtime_ns for p in tls.iterdir()} == made
    assert all(oct(p.stat().st_mode)[-3:] == "600" for p in tls.glob("*.key"))
