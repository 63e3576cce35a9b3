"""The listener's pure parts: settings, job names, the study-completion rule, status files, failure reasons."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kit.dicom.collector import StudyCollector
from kit.dicom.config import ConfigError, Destination, parse_allow_list, parse_destinations
from kit.dicom.jobs import Job, fail_interrupted, job_name, read_jobs
from kit.dicom.listen import config_from, parse_args, pipeline_command
from kit.dicom.orthanc import PacsConfig, orthanc_config
from kit.dicom.runner import failure_reason

ROOT = Path(__file__).resolve().parents[1]


def test_destination_and_allow_list() -> None:
    assert parse_destinations("ORTHANC@127.0.0.1:4242") == (Destination("ORTHANC", "127.0.0.1", 4242),)
    assert parse_destinations(" PACS@pacs.example.org:104 , B@h:2,") == (
        Destination("PACS", "pacs.example.org", 104), Destination("B", "h", 2))
    assert parse_destinations("") == parse_destinations(" , ") == ()
    for bad in ("ORTHANC", "ORTHANC@host", "@host:1", "A@h:0", "A@h:70000", "WAYTOOLONGAETITLE1@h:1",
                "A B@h:1", "A\\B@h:1", "A@h:1;B@h:2", "A@h:1,nope"):
        with pytest.raises(ConfigError, match="DICOM_DESTINATION"):
            parse_destinations(bad)
    assert parse_allow_list("") == ()
    assert parse_allow_list("CT1, MR_2  PACS") == ("CT1", "MR_2", "PACS")
    with pytest.raises(ConfigError, match="LISTEN_ALLOWED_AETS"):
        parse_allow_list("GOOD,BAD\\AE")


def test_listener_hands_several_destinations_to_the_pipeline(tmp_path: Path) -> None:
    """DICOM_DESTINATION with two entries: the listener takes both, and gives the liver pipeline's jobs the same
    comma-separated text, as its parameter and as a variable, which register-results reads back the same."""
    from odk.dicom.store import StoreConfig

    args = parse_args(["serve", "--run-dir", str(tmp_path / "listen"), "--pacs-run-dir", str(tmp_path / "pacs"),
                       "--pipeline", str(ROOT / "def" / "liver-dicom-pipeline.yml"),
                       "--destination", "A@h:1, B@h2.example:2"])
    cfg = config_from(args)
    assert cfg.destinations == (Destination("A", "h", 1), Destination("B", "h2.example", 2))
    command, _ = pipeline_command(cfg)
    assert "DICOM_DESTINATION=A@h:1,B@h2.example:2" in command.params
    env = dict(command.env)
    assert StoreConfig.from_env(env).destinations == cfg.destinations


def test_job_name_is_clara_style_and_unique() -> None:
    when = datetime(2026, 12, 3, 14, 5, 9, tzinfo=UTC)
    names = {job_name("ODK", "liver-dicom", when) for _ in range(50)}
    assert len(names) == 50
    assert all(re.fullmatch(r"ODK-liver-dicom-20261203140509-[0-9a-f]{6}", n) for n in names)
    assert job_name("MY AE", "a/b", when).startswith("MY_AE-a_b-20261203140509-")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_study_completes_after_release_and_idle(tmp_path: Path) -> None:
    clock = Clock()
    made: list[Job] = []

    def new_job(study: str, calling: str) -> Job:
        made.append(Job.create(tmp_path, f"job{len(made)}", study, calling, "p.yml"))
        return made[-1]

    c = StudyCollector(5.0, new_job, clock)
    a = c.job_for("1.2.3", "CT1", assoc_id=1)
    assert c.job_for("1.2.3", "CT1", assoc_id=1) is a  # same study, same job
    b = c.job_for("1.2.4", "CT1", assoc_id=1)  # last instance at t=100
    clock.now = 110.0
    assert c.complete() == []  # idle for 10 s, but the association is still open
    c.job_for("1.2.4", "CT1", assoc_id=1)  # one more instance of b at t=110
    c.closed(1)
    assert c.complete() == [a]  # released, and a's last instance is 10 s old
    clock.now = 114.9
    assert c.complete() == []  # b's last instance is 4.9 s old
    clock.now = 115.0
    assert c.complete() == [b]
    assert c.complete() == []
    later = c.job_for("1.2.3", "CT1", assoc_id=2)  # the same study again: a new job
    assert later is not a and len(made) == 3


def test_second_association_keeps_study_open(tmp_path: Path) -> None:
    clock = Clock()
    c = StudyCollector(5.0, lambda s, a: Job.create(tmp_path, f"j-{a}", s, a, "p.yml"), clock)
    job = c.job_for("9.9", "A", assoc_id=1)
    c.job_for("9.9", "B", assoc_id=2)
    c.closed(1)
    clock.now += 6
    assert c.complete() == []  # association 2 is still delivering
    c.closed(2)
    assert c.complete() == [job]
    assert job.status.calling_aet == "A"


def test_status_file_and_interrupted_jobs(tmp_path: Path) -> None:
    job = Job.create(tmp_path, "ODK-p-1", "1.2", "CT1", "def/p.yml")
    job.add_instance("1.2.1", "1.2.1.1", b"x")
    job.add_instance("1.2.1", "1.2.1.1", b"y")  # resent: replaces, counted once
    job.add_instance("1.2.1", "1.2.1.2", b"z")
    status = json.loads((job.folder / "status.json").read_text())
    assert status["instances"] == 2 and status["state"] == "receiving"
    assert (job.input_dir / "1.2.1" / "1.2.1.1.dcm").read_bytes() == b"y"
    assert not list(job.folder.rglob("*.part"))
    done = Job.create(tmp_path, "ODK-p-2", "1.3", "CT1", "def/p.yml")
    done.update(state="succeeded")
    assert fail_interrupted(tmp_path) == ["ODK-p-1"]
    states = {s["job"]: (s["state"], s["reason"]) for s in read_jobs(tmp_path)}
    assert states["ODK-p-2"] == ("succeeded", "")
    assert states["ODK-p-1"][0] == "failed" and "instances are kept" in states["ODK-p-1"][1]


def test_failure_reason_is_the_pipelines_error_line(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_text("[odk] pipeline x\n[seg] boom\n[odk] error: operator 'seg' (exit 1) failed; logs in /x\n")
    assert failure_reason(log, 1) == "operator 'seg' (exit 1) failed; logs in /x"
    log.write_text("Traceback ...\n")
    assert failure_reason(log, 3) == "the pipeline exited with code 3 (see job.log)"


def test_orthanc_config(tmp_path: Path) -> None:
    cfg = orthanc_config(PacsConfig(tmp_path, 4243, 8043, "MYPACS", "ODK2", 11113))
    assert (cfg["DicomPort"], cfg["HttpPort"], cfg["DicomAet"]) == (4243, 8043, "MYPACS")
    assert cfg["RemoteAccessAllowed"] is False
    assert cfg["StorageDirectory"].startswith(str(tmp_path.resolve()))
    assert cfg["DicomModalities"] == {"odk": ["ODK2", "127.0.0.1", 11113]}
