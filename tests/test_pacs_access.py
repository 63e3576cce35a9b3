"""The development PACS (`make pacs`, a real Orthanc) is closed to strangers: dcmtk's findscu, storescu and
echoscu under an AE title it does not know, or calling it by another AE title, or from another host than the
one registered, are rejected at association (and Orthanc logs it); the same tools under a registered AE title
work, and the listener's results still arrive (tests/test_dicom_e2e.py)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from container_helpers import make
from dicom_net_helpers import Pacs, echoscu, require_tools, running_pacs, storescu, write_ct_series


def findscu(pacs: Pacs, calling: str, host: str = "127.0.0.1") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["findscu", "-S", "-aet", calling, "-aec", pacs.aet, "-k", "QueryRetrieveLevel=STUDY",
                           "-k", "PatientName", "-k", "StudyInstanceUID", host, str(pacs.dicom_port)],
                          capture_output=True, text=True, timeout=60, check=False)


def own_address() -> str | None:
    """An address of this machine that is not loopback (a connection to it comes from it), if there is one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") else address


def test_unknown_callers_are_rejected_and_registered_ones_work(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    require_tools()
    study = write_ct_series(tmp_path / "study", slices=3)
    with running_pacs(tmp_path / "run", pytestconfig) as pacs:
        log = tmp_path / "run" / "pacs" / "orthanc.log"
        # Registered AE titles (dcmtk's defaults, PACS_ALLOWED_AETS): store, then find what was stored.
        sent = storescu(tmp_path / "study", pacs.dicom_port, called=pacs.aet, calling="STORESCU")
        assert sent.returncode == 0, sent.stderr
        found = findscu(pacs, "FINDSCU")
        assert found.returncode == 0 and study in found.stderr + found.stdout, found.stderr
        assert echoscu(pacs.dicom_port, called=pacs.aet, calling="ECHOSCU").returncode == 0

        # A stranger: nothing stored, nothing listed, rejected at association, a line in Orthanc's log.
        write_ct_series(tmp_path / "other", slices=2)
        for run in (storescu(tmp_path / "other", pacs.dicom_port, called=pacs.aet, calling="STRANGER"),
                    findscu(pacs, "STRANGER"), echoscu(pacs.dicom_port, called=pacs.aet, calling="STRANGER")):
            assert run.returncode != 0
            assert "Calling AE Title Not Recognized" in run.stderr, run.stderr
            assert study not in run.stdout + run.stderr
        assert "Rejected association for remote AET STRANGER" in log.read_text()
        # A known AE title calling the PACS by another name than its own.
        wrong = storescu(tmp_path / "other", pacs.dicom_port, called="NOTTHEPACS", calling="STORESCU")
        assert wrong.returncode != 0 and "Called AE Title Not Recognized" in wrong.stderr, wrong.stderr
        # A known AE title from another host than the one registered (Orthanc listens on every interface).
        address = own_address()
        if address is not None:
            remote = findscu(pacs, "FINDSCU", host=address)
            assert remote.returncode != 0 and study not in remote.stdout + remote.stderr, remote.stderr
            assert f"Rejected association for remote AET FINDSCU on IP {address}" in log.read_text()
        stats = pacs.rest.get("/statistics")
        assert isinstance(stats, dict) and stats["CountInstances"] == 3  # the stranger's 2 were not stored


def test_an_added_modality_is_let_in(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    """PACS_ALLOWED_AETS is how a user adds a modality: its AE title is accepted, dcmtk's defaults then are not."""
    require_tools()

    run_dir = tmp_path / "run"
    write_ct_series(tmp_path / "study", slices=2)
    with running_pacs(run_dir, pytestconfig, PACS_ALLOWED_AETS="MYVIEWER@127.0.0.1:104") as pacs:
        assert storescu(tmp_path / "study", pacs.dicom_port, called=pacs.aet, calling="MYVIEWER").returncode == 0
        refused = storescu(tmp_path / "study", pacs.dicom_port, called=pacs.aet, calling="STORESCU")
        assert refused.returncode != 0 and "Calling AE Title Not Recognized" in refused.stderr
    bad = make("pacs", pytestconfig, env={"ODK_RUN_DIR": str(run_dir)}, timeout=60, PACS_ALLOWED_AETS="A@b@c")
    assert bad.returncode != 0
    (line,) = [line for line in bad.stderr.splitlines() if not line.startswith("make")]
    assert line.startswith("[odk] error: PACS_ALLOWED_AETS entry 'A@b@c'"), bad.stderr
