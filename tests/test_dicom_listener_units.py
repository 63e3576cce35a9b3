"""The listener's pure parts: settings, job names, the study-completion rule, status files, failure reasons."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kit.dicom.collector import Stored, StudyCollector
from kit.dicom.config import ConfigError, Destination, parse_allow_list, parse_destinations
from kit.dicom.intake import Received
from kit.dicom.jobs import Job, job_name, read_jobs
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


class Studies:
    """A collector on real job folders, fed with instance files as the SCP hands them over."""

    def __init__(self, tmp_path: Path, idle_s: float = 5.0) -> None:
        self.tmp = tmp_path
        self.clock = Clock()
        self.made: list[Job] = []
        self.lines: list[str] = []
        self.c = StudyCollector(idle_s, self.new_job, self.lines.append, self.clock)

    def new_job(self, study: str, calling: str) -> Job:
        self.made.append(Job.create(self.tmp / "jobs", f"job{len(self.made)}", study, calling, "p.yml"))
        return self.made[-1]

    def store(self, study: str, sop: str, assoc: int, data: bytes = b"x", series: str = "1.9",
              patient: str = "P1", calling: str = "CT1") -> Stored:
        (self.tmp / "in").mkdir(exist_ok=True)
        received = self.tmp / "in" / f"{sop}-{assoc}"
        received.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        return self.c.store(Received(study, series, sop, "1.2.840.10008.5.1.4.1.1.2", patient, digest), received,
                            calling, assoc)


def test_study_completes_after_release_and_idle(tmp_path: Path) -> None:
    s = Studies(tmp_path)
    a = s.store("1.2.3", "1.2.3.1", assoc=1).job
    assert s.store("1.2.3", "1.2.3.2", assoc=1).job is a  # same study, same job
    b = s.store("1.2.4", "1.2.4.1", assoc=1).job  # last instance at t=100
    s.clock.now = 110.0
    assert s.c.complete() == []  # idle for 10 s, but the association is still open
    s.store("1.2.4", "1.2.4.2", assoc=1)  # one more instance of b at t=110
    s.c.closed(1)
    assert s.c.complete() == [a]  # released, and a's last instance is 10 s old
    s.clock.now = 114.9
    assert s.c.complete() == []  # b's last instance is 4.9 s old
    s.clock.now = 115.0
    assert s.c.complete() == [b]
    assert s.c.complete() == []
    assert sorted(p.name for p in a.input_dir.rglob("*.dcm")) == ["1.2.3.1.dcm", "1.2.3.2.dcm"]


def test_second_association_keeps_study_open(tmp_path: Path) -> None:
    s = Studies(tmp_path)
    job = s.store("9.9", "9.9.1", assoc=1, calling="A").job
    s.store("9.9", "9.9.2", assoc=2, calling="B")
    s.c.closed(1)
    s.clock.now += 6
    assert s.c.complete() == []  # association 2 is still delivering
    s.c.closed(2)
    assert s.c.complete() == [job]
    assert job.status.calling_aet == "A"


def test_aborted_association_holds_the_study_until_more_of_it_comes(tmp_path: Path) -> None:
    s = Studies(tmp_path)
    job = s.store("7.7", "7.7.1", assoc=1).job
    s.c.closed(1, "the association from CT1 (127.0.0.1) aborted")
    s.clock.now += 6
    assert s.c.complete() == []
    assert job.status.state == "incomplete" and "aborted" in job.status.reason
    assert any("held incomplete with 1 instance(s)" in line for line in s.lines), s.lines
    assert s.store("7.7", "7.7.2", assoc=2).job is job  # the rest: the same job receives again
    assert job.status.state == "receiving"
    s.c.closed(2)
    s.clock.now += 6
    assert s.c.complete() == [job] and job.status.instances == 2


def test_refused_instances_leave_the_study_incomplete(tmp_path: Path) -> None:
    s = Studies(tmp_path)
    s.c.refused("5.5", 1, "1 instance(s) refused: too little free disk space")  # before the study has a job
    job = s.store("5.5", "5.5.2", assoc=1).job
    s.c.closed(1)
    s.clock.now += 6
    assert s.c.complete() == [] and job.status.state == "incomplete"
    assert "too little free disk space" in job.status.reason


def test_later_instances_rerun_the_study_and_identical_ones_change_nothing(tmp_path: Path) -> None:
    s = Studies(tmp_path)
    first = s.store("3.3", "3.3.1", assoc=1, data=b"a").job
    s.c.closed(1)
    s.clock.now += 6
    assert s.c.complete() == [first]
    assert s.store("3.3", "3.3.1", assoc=2, data=b"a").outcome == "same"  # re-sent as it was: no new job
    s.c.closed(2)
    s.clock.now += 6
    assert s.c.complete() == [] and len(s.made) == 1
    later = s.store("3.3", "3.3.2", assoc=3, data=b"b").job  # a new instance: a follow-up job, all instances
    assert later is not first
    s.c.closed(3)
    s.clock.now += 6
    assert s.c.complete() == [later]
    assert sorted(p.name for p in later.input_dir.rglob("*.dcm")) == ["3.3.1.dcm", "3.3.2.dcm"]
    assert later.status.instances == 2 and later.status.supersedes == first.name
    assert first.status.superseded_by == later.name
    changed = s.store("3.3", "3.3.1", assoc=4, data=b"changed")  # same UID, other bytes: re-run again
    assert changed.outcome == "stored" and changed.job not in (first, later)


def test_instances_never_join_another_patients_or_studys_job(tmp_path: Path) -> None:
    s = Studies(tmp_path)
    s.store("4.4", "4.4.1", assoc=1, patient="P1")
    assert s.store("4.4", "4.4.2", assoc=2, patient="P2").outcome == "conflict"  # same study UID, other patient
    assert s.store("4.5", "4.4.1", assoc=2).outcome == "conflict"  # a SOP UID of another study
    assert s.store("4.4", "4.4.1", assoc=1, series="1.8").outcome == "conflict"  # the same SOP UID, other series
    assert len(s.made) == 1 and s.made[0].status.instances == 1
    assert not list((tmp_path / "in").iterdir())  # what was refused is not kept


def test_status_file(tmp_path: Path) -> None:
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
    states = {s["job"]: s["state"] for s in read_jobs(tmp_path)}
    assert states == {"ODK-p-1": "receiving", "ODK-p-2": "succeeded"}


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
    odk = {"AET": "ODK2", "Host": "127.0.0.1", "Port": 11113, "AllowEcho": True, "AllowFind": False,
           "AllowGet": False, "AllowMove": False, "AllowStore": True}
    assert cfg["DicomModalities"]["odk"] == odk
    assert cfg["DicomModalities"]["register-results"]["AET"] == "ODK"  # register-results' calling AE
    assert {m["AET"] for m in cfg["DicomModalities"].values()} == {"ODK2", "ODK", "STORESCU", "FINDSCU", "ECHOSCU"}
    assert not any(v for k, v in cfg.items() if k.startswith("DicomAlwaysAllow"))
    assert cfg["DicomCheckCalledAet"] is True and cfg["DicomCheckModalityHost"] is True


def test_a_restarted_listener_knows_held_and_finished_studies(tmp_path: Path) -> None:
    s = Studies(tmp_path)
    done = s.store("6.1", "6.1.1", assoc=1, data=b"a").job
    held = s.store("6.2", "6.2.1", assoc=1).job
    s.c.refused("6.2", 1, "1 instance(s) refused: too little free disk space")
    s.c.closed(1)
    s.clock.now += 6
    assert s.c.complete() == [done]
    done.update(state="succeeded")
    again = Studies(tmp_path)  # the next run of the listener, on the same jobs
    assert [j.name for j in again.c.adopt(tmp_path / "jobs")] == [held.name]
    assert again.c.pending["6.2"].job.name == held.name
    assert again.store("6.1", "6.1.1", assoc=2, data=b"a").outcome == "same"  # re-sent as it was: nothing new
    joined = again.store("6.2", "6.2.2", assoc=2)  # the rest of the held study joins its job
    assert joined.job.name == held.name and joined.job.status.state == "receiving"
    again.c.closed(2)
    again.clock.now += 6
    assert [j.name for j in again.c.complete()] == [held.name]
    assert again.made == []
