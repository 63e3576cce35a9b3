"""The listener under faults, load and hostile peers (real `make listen`, real pynetdicom and dcmtk peers, raw
sockets, the sample series from the phantom writer, a real tmpfs): partial studies are held, not run; nothing
of one patient joins another's job; oversized PDUs and silent peers cannot exhaust or block it; bad data is not
acknowledged as stored; a full disk does not stop it.

The pipeline is tests/data/listener/inventory-pipeline.yml (it lists what a job received).
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from container_helpers import ROOT
from dicom_door_helpers import (
    answers_echo,
    associate_rq,
    closed_by_peer,
    connect,
    held_association,
    listener_pid,
    memory_kb,
    read_pdu,
    send,
)
from dicom_helpers import write_sample
from dicom_net_helpers import (
    Listener,
    copy_as_new_study,
    jobs,
    require_tools,
    running_listener,
    storescu,
    wait_jobs,
    write_ct_series,
)
from pydicom.uid import generate_uid

PIPELINE = ROOT / "tests" / "data" / "listener" / "inventory-pipeline.yml"
ENDED = ("succeeded", "failed", "incomplete")


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_tools()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample study as 64 CT files (kit.phantom.dicom)."""
    folder = tmp_path_factory.mktemp("sample")
    write_sample(folder)
    return folder


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Listener]:
    """One listener for the tests that each send their own studies (LISTEN_IDLE_S=1)."""
    with running_listener(tmp_path_factory.mktemp("shared"), PIPELINE, pytestconfig) as running:
        yield running


def new_study(sample: Path, target: Path) -> tuple[str, list[Path]]:
    study = copy_as_new_study(sample, target)
    return study, sorted(target.glob("*.dcm"))


def study_jobs(listener: Listener, study: str) -> list[dict]:
    return [j for j in jobs(listener) if j["study_instance_uid"] == study]


def wait_study(listener: Listener, study: str, count: int = 1, timeout: float = 120,
               states: tuple[str, ...] = ENDED) -> list[dict]:
    """The study's jobs (oldest first) once `count` exist and all are in one of `states`."""
    deadline = time.monotonic() + timeout
    found: list[dict] = []
    while time.monotonic() < deadline:
        found = sorted(study_jobs(listener, study), key=lambda j: j["received_at"])
        if len(found) >= count and all(j["state"] in states for j in found):
            return found
        time.sleep(0.2)
    raise AssertionError(f"study {study}: expected {count} job(s) in {states}, have {found}\n{log_text(listener)}")


def job_files(listener: Listener, job: dict) -> list[Path]:
    return sorted((listener.jobs_dir / job["job"] / "input").rglob("*.dcm"))


def inventory(listener: Listener, job: dict) -> list[dict]:
    return json.loads((listener.jobs_dir / job["job"] / "output" / "inventory" / "inventory.json").read_text())


def log_text(listener: Listener) -> str:
    return listener.log.read_text(errors="replace")


# -- partial studies ------------------------------------------------------------------------------------------
def test_aborted_association_holds_the_job_incomplete_until_the_rest_comes(listener: Listener, sample: Path,
                                                                            tmp_path: Path) -> None:
    study, files = new_study(sample, tmp_path / "s")
    assert send(files[:40], listener, calling="ABORTER", abort=True) == [0] * 40
    (held,) = wait_study(listener, study, states=("incomplete",))
    time.sleep(1.5)  # longer than LISTEN_IDLE_S: still held, never run
    (held,) = study_jobs(listener, study)
    assert held["state"] == "incomplete" and held["instances"] == 40 and held["started_at"] == "", held
    assert "aborted" in held["reason"], held
    assert len(job_files(listener, held)) == 40
    assert not (listener.jobs_dir / held["job"] / "output").exists()
    log = log_text(listener)
    assert f"job {held['job']}: study {study} held incomplete with 40 instance(s), not run" in log, log
    assert "association from ABORTER (127.0.0.1) aborted" in log, log
    # the sender sends the rest: the same job receives it and runs on the whole study
    assert storescu(tmp_path / "s", listener.port, calling="ABORTER").returncode == 0
    (done,) = wait_study(listener, study, states=("succeeded", "failed"))
    assert done["job"] == held["job"] and done["state"] == "succeeded", done
    assert done["instances"] == 64 == len(job_files(listener, done)) == len(inventory(listener, done))
    assert answers_echo(listener)


def test_a_pause_longer_than_the_idle_time_reruns_the_whole_study_and_a_resend_changes_nothing(
        listener: Listener, sample: Path, tmp_path: Path) -> None:
    study, files = new_study(sample, tmp_path / "s")
    (tmp_path / "first").mkdir()
    (tmp_path / "rest").mkdir()
    for i, f in enumerate(files):
        os.link(f, tmp_path / ("first" if i < 40 else "rest") / f.name)
    assert storescu(tmp_path / "first", listener.port, calling="PAUSER").returncode == 0
    wait_study(listener, study, states=("queued", "running", "succeeded"))  # the 40 were handed on
    assert storescu(tmp_path / "rest", listener.port, calling="PAUSER").returncode == 0
    first, rerun = wait_study(listener, study, count=2, states=("succeeded",))
    assert first["instances"] == 40 and first["superseded_by"] == rerun["job"], first
    assert rerun["instances"] == 64 and rerun["supersedes"] == first["job"], rerun
    assert len(job_files(listener, rerun)) == 64 == len(inventory(listener, rerun))
    assert {i["sop"] for i in inventory(listener, rerun)} == {pydicom.dcmread(f).SOPInstanceUID for f in files}
    assert "re-runs the study with its 40 instance(s) and the new ones" in log_text(listener)
    # the whole study again, byte for byte: no new job
    assert storescu(tmp_path / "s", listener.port, calling="PAUSER").returncode == 0
    time.sleep(2.5)
    assert len(study_jobs(listener, study)) == 2
    assert "0 instance(s) stored, 64 identical to instances already received" in log_text(listener)


# -- patients mixed -----------------------------------------------------------------------------------------
def blank(files: list[Path], **values: str) -> list[pydicom.Dataset]:
    out = []
    for f in files:
        ds = pydicom.dcmread(f)
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        out.append(ds)
    return out


def test_two_patients_with_empty_study_uids_are_refused_not_mixed(listener: Listener, sample: Path,
                                                                  tmp_path: Path) -> None:
    series: dict[str, str] = {}
    for name, patient in (("SENDER_A", "PATIENT-A"), ("SENDER_B", "PATIENT-B")):
        _, files = new_study(sample, tmp_path / f"{name}-src")
        (tmp_path / name).mkdir()
        for i, ds in enumerate(blank(files[:20], StudyInstanceUID="", PatientID=patient)):
            ds.save_as(tmp_path / name / f"IM{i:04d}.dcm", enforce_file_format=True)
            series[name] = ds.SeriesInstanceUID
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    def storescu_no_halt(name: str) -> None:  # dcmtk's storescu, going on after a refused instance
        results[name] = subprocess.run(["storescu", "--no-halt", "+sd", "-aet", name, "-aec", listener.aet,
                                        "127.0.0.1", str(listener.port), str(tmp_path / name)],
                                       capture_output=True, text=True, timeout=120, check=False)

    senders = [threading.Thread(target=storescu_no_halt, args=(n,)) for n in series]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    assert set(results) == set(series)
    time.sleep(1.5)
    assert study_jobs(listener, "") == []
    log = log_text(listener)
    for name, uid in series.items():
        line = (f"association from {name} (127.0.0.1): 20 instance(s) of series {uid} "
                "refused: no StudyInstanceUID; re-export them with UIDs")
        assert log.count(line) == 1, log
        assert f"association from {name} (127.0.0.1) released: nothing stored" in log, log


def test_blanked_uids_get_one_clear_line_with_the_count(listener: Listener, sample: Path, tmp_path: Path) -> None:
    _, files = new_study(sample, tmp_path / "s")
    blanked = blank(files[:20], SOPInstanceUID="", StudyInstanceUID="", SeriesInstanceUID="")
    for ds in blanked:
        ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"  # the command needs some Affected SOP Instance UID
    paths = []
    for i, ds in enumerate(blanked):
        paths.append(tmp_path / f"blank{i}.dcm")
        ds.save_as(paths[-1], enforce_file_format=False)
    assert send(paths, listener, calling="BLANKED") == [0xC000] * 20
    time.sleep(0.5)
    log = log_text(listener)
    assert "association from BLANKED (127.0.0.1): 20 instance(s) refused: no SOPInstanceUID; re-export them with " \
           "UIDs" in log, log
    assert "another copy" not in log


def test_command_and_data_set_uids_must_agree(listener: Listener, sample: Path, tmp_path: Path) -> None:
    study, files = new_study(sample, tmp_path / "s")
    one_command_uid = generate_uid()
    paths = []
    for i, ds in enumerate(blank(files[:3])):
        ds.file_meta.MediaStorageSOPInstanceUID = one_command_uid  # what a chunked send puts in the command
        paths.append(tmp_path / f"m{i}.dcm")
        ds.save_as(paths[-1], enforce_file_format=False)
    assert send(paths, listener, calling="MISMATCH") == [0xA900] * 3
    time.sleep(1.5)
    assert study_jobs(listener, study) == []  # nothing of it was stored: no job
    assert "3 instance(s)" in log_text(listener) and "other than the C-STORE command's" in log_text(listener)


@pytest.mark.parametrize(("keyword", "value"), [
    ("SOPInstanceUID", "1.2.3/4"), ("SOPInstanceUID", "1.2.3 4"), ("SeriesInstanceUID", ".."),
    ("SeriesInstanceUID", "../../../etc"), ("SeriesInstanceUID", "1." + "2" * 300), ("StudyInstanceUID", "1.02.3"),
])
def test_uids_that_are_not_uids_are_refused_and_nothing_leaves_input(keyword: str, value: str, listener: Listener,
                                                                     sample: Path, tmp_path: Path) -> None:
    study, files = new_study(sample, tmp_path / "s")
    bad, good = blank(files[:2])
    setattr(bad, keyword, value)
    if keyword == "SOPInstanceUID":
        bad.file_meta.MediaStorageSOPInstanceUID = value
    assert send([bad, good], listener, calling="BADUIDS") == [0xC000, 0]
    (job,) = wait_study(listener, study)
    assert job["instances"] == 1 and [p.name for p in job_files(listener, job)] == [f"{good.SOPInstanceUID}.dcm"]
    folder = listener.jobs_dir / job["job"]
    assert sorted(p.relative_to(folder).parts[0] for p in folder.rglob("*.dcm")) == ["input"]
    if keyword == "StudyInstanceUID":  # the refused instance belongs to no study: the good one's job runs
        assert job["state"] == "succeeded", job
    else:  # one instance of the study was refused: its job is held
        assert job["state"] == "incomplete" and "invalid" in job["reason"], job
    assert not list(listener.jobs_dir.parent.glob("etc*"))


def test_distinct_sop_uids_never_share_a_file(listener: Listener, sample: Path, tmp_path: Path) -> None:
    study, files = new_study(sample, tmp_path / "s")
    series = blank(files[:3])
    uid = series[0].SOPInstanceUID
    series[1].SOPInstanceUID = uid[:-1] + ("1" if uid[-1] != "1" else "2")  # valid, distinct, one digit apart
    assert send(series, listener, calling="DISTINCT") == [0, 0, 0]
    (job,) = wait_study(listener, study)
    assert job["state"] == "succeeded" and job["instances"] == 3 == len(job_files(listener, job))


def test_a_newline_in_a_uid_forges_no_log_line(listener: Listener, sample: Path, tmp_path: Path) -> None:
    _, files = new_study(sample, tmp_path / "s")
    (ds,) = blank(files[:1], StudyInstanceUID="1.2.3\n[odk] 00:00:00 job FORGED: succeeded in 1.0 s")
    assert send([ds], listener, calling="FORGER") == [0xC000]
    time.sleep(0.5)
    lines = log_text(listener).splitlines()
    assert not any(line.startswith("[odk] 00:00:00 job FORGED") for line in lines)
    assert all(line.startswith("[odk] ") for line in lines), lines


@pytest.mark.parametrize("calling", [b"BAD\\AE", b"\x01\x02NUL", b" " * 16])
def test_invalid_calling_ae_titles_are_rejected_with_a_log_line(calling: bytes, listener: Listener) -> None:
    with connect(listener) as sock:
        sock.sendall(associate_rq(listener.aet.encode(), calling))
        kind, body = read_pdu(sock)
    assert kind == 0x03 and body[1:4] == bytes([1, 1, 3]), (kind, body)  # A-ASSOCIATE-RJ: calling AE unknown
    time.sleep(0.3)
    assert "rejected: its calling AE title is not a DICOM AE title" in log_text(listener)
    assert answers_echo(listener)


# -- easy to block or exhaust ---------------------------------------------------------------------------------
def test_a_pdu_longer_than_offered_is_aborted_unread(listener: Listener) -> None:
    pid = listener_pid(listener)
    before = memory_kb(pid)
    sent = 0
    with connect(listener) as sock:
        sock.sendall(associate_rq(listener.aet.encode(), b"BIGPDU"))
        kind, _ = read_pdu(sock)
        assert kind == 0x02  # A-ASSOCIATE-AC
        sock.sendall(struct.pack(">BBL", 0x04, 0, 0xFFFFFFF0))
        chunk = bytes(1 << 20)
        try:
            while sent < 800 << 20:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert sent < 64 << 20, f"the listener read {sent >> 20} MB of a PDU it should have refused"
    assert memory_kb(pid) - before < 50_000, (before, memory_kb(pid))
    time.sleep(0.3)
    assert ("association from BIGPDU (127.0.0.1) aborted: a PDU (type 0x04) of 4294967280 bytes, more than the "
            "16382 the listener accepts") in log_text(listener)
    assert answers_echo(listener)


def test_a_large_instance_streams_to_disk(listener: Listener, tmp_path: Path) -> None:
    write_ct_series(tmp_path / "big", slices=1, size=16)
    path = tmp_path / "big" / "IM0000"
    ds = pydicom.dcmread(path)
    side = 7168  # one 7168 x 7168 16-bit frame: 98 MiB
    ds.Rows = ds.Columns = side
    ds.PixelData = np.zeros((side, side), dtype=np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    del ds
    pid = listener_pid(listener)
    peak_before = memory_kb(pid, "VmHWM")
    assert storescu(tmp_path / "big", listener.port, calling="BIGSCU").returncode == 0
    study = pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID
    (job,) = wait_study(listener, study)
    assert job["state"] == "succeeded" and job["instances"] == 1, job
    (stored,) = job_files(listener, job)
    assert stored.stat().st_size > side * side * 2
    # held whole in memory, the peak would grow by ~100 MB (and more for copies); streamed, it barely moves
    assert memory_kb(pid, "VmHWM") - peak_before < 40_000, (peak_before, memory_kb(pid, "VmHWM"))


def test_silent_connections_do_not_lock_others_out(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    with running_listener(tmp_path / "run", PIPELINE, pytestconfig, LISTEN_ACSE_TIMEOUT_S="3") as listener:
        silent = [connect(listener) for _ in range(10)]
        try:
            study = write_ct_series(tmp_path / "s", slices=4)
            assert answers_echo(listener)
            sent = storescu(tmp_path / "s", listener.port, calling="NOTBLOCKED")
            assert sent.returncode == 0, sent.stderr
            (job,) = wait_study(listener, study)
            assert job["state"] == "succeeded"
            assert all(closed_by_peer(s, 10) for s in silent)  # the listener hangs up on them
        finally:
            for s in silent:
                s.close()
        # the socket is closed before its line is written: wait for the ten lines
        line = "connection from 127.0.0.1 closed: no association request (A-ASSOCIATE-RQ) within 3 s"
        deadline = time.monotonic() + 10
        while log_text(listener).count(line) < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        log = log_text(listener)
        assert log.count(line) >= 10, log
        # a burst of 14 senders, each its own caller
        results: list[int] = []
        folders = []
        for i in range(14):
            write_ct_series(tmp_path / f"b{i}", slices=2)
            folders.append(tmp_path / f"b{i}")
        burst = [threading.Thread(target=lambda i=i: results.append(
            storescu(folders[i], listener.port, calling=f"BURST{i:02d}").returncode)) for i in range(14)]
        for t in burst:
            t.start()
        for t in burst:
            t.join()
        assert results == [0] * 14
        assert "rejected" not in log_text(listener)


def test_association_limits_refuse_with_the_caller_in_the_log(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    with running_listener(tmp_path / "run", PIPELINE, pytestconfig, LISTEN_MAX_ASSOCIATIONS="2",
                          LISTEN_MAX_PER_CALLER="1") as listener:
        with held_association(listener, "HOLDER") as first:
            assert first.is_established
            with held_association(listener, "HOLDER") as second:
                assert not second.is_established and second.is_rejected
            with held_association(listener, "OTHER") as other:
                assert other.is_established
                with held_association(listener, "THIRD") as third:
                    assert third.is_rejected
        assert answers_echo(listener)
        log = log_text(listener)
    assert ("association from HOLDER (127.0.0.1) rejected: 1 associations of this caller open "
            "(LISTEN_MAX_PER_CALLER=1)") in log, log
    assert "association from THIRD (127.0.0.1) rejected: 2 associations open (LISTEN_MAX_ASSOCIATIONS=2)" in log, log


# -- bad data acknowledged as stored --------------------------------------------------------------------------
def test_pixel_data_that_is_not_all_there_is_refused(listener: Listener, sample: Path, tmp_path: Path) -> None:
    study, files = new_study(sample, tmp_path / "s")
    short, declared, good = blank(files[:3])
    short.PixelData = short.PixelData[: len(short.PixelData) // 2]  # fewer bytes than Rows x Columns x 2
    declared.save_as(tmp_path / "declared.dcm", enforce_file_format=True)
    raw = bytearray((tmp_path / "declared.dcm").read_bytes())
    at = raw.rfind(b"\xe0\x7f\x10\x00OW\x00\x00")  # PixelData, explicit VR: tag, VR, 2 reserved, 4-byte length
    raw[at + 8: at + 12] = struct.pack("<L", 0xF0000000)  # declares 4 GB...
    del raw[at + 12 + 1000:]  # ...and has 1000 bytes
    (tmp_path / "declared.dcm").write_bytes(bytes(raw))
    assert send([short, tmp_path / "declared.dcm", good], listener, calling="BADPIXELS") == [0xC000, 0xC000, 0]
    (job,) = wait_study(listener, study)
    assert job["state"] == "incomplete" and job["instances"] == 1, job
    assert [p.name for p in job_files(listener, job)] == [f"{good.SOPInstanceUID}.dcm"]
    log = log_text(listener)
    assert "refused: pixel data shorter than Rows x Columns x samples x BitsAllocated/8 x frames" in log, log
    assert "refused: PixelData declares 4026531840 bytes, 1000 sent" in log, log


# -- a full disk ------------------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 40 MB tmpfs (root only), unmounted afterwards."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)], capture_output=True,
                          text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()}); the full-disk test needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave_mb: float) -> Path:
    """A file that takes the disk's free space down to about leave_mb."""
    filler = disk / f"filler-{time.monotonic_ns()}"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize - int(leave_mb * (1 << 20))
    with filler.open("wb") as fh:
        try:
            while free > 0:
                n = min(free, 1 << 20)
                fh.write(bytes(n))
                free -= n
        except OSError:
            pass
    return filler


def test_a_full_disk_refuses_stores_and_never_stops_the_listener(small_disk: Path, tmp_path: Path,
                                                                 pytestconfig: pytest.Config) -> None:
    first = write_ct_series(tmp_path / "first", slices=4, size=64)
    with running_listener(small_disk, PIPELINE, pytestconfig, LISTEN_MIN_FREE_MB="8", LISTEN_IDLE_S="3") as listener:
        pid = listener_pid(listener)
        # the disk fills inside the idle window of a study that arrived whole
        assert storescu(tmp_path / "first", listener.port, calling="FULLDISK").returncode == 0
        filler = fill(small_disk, 0)
        time.sleep(4.5)
        assert Path(f"/proc/{pid}").exists() and answers_echo(listener)
        # below the floor: Out of Resources, and the study is not run as if complete
        write_ct_series(tmp_path / "second", slices=4, size=64)
        second = send(sorted((tmp_path / "second").iterdir()), listener, calling="FULLDISK")
        assert all(s in (0xA700, None) for s in second), second
        assert Path(f"/proc/{pid}").exists() and answers_echo(listener)
        filler.unlink()
        (job,) = wait_study(listener, first, states=("succeeded",))
        assert job["instances"] == 4
        fill(small_disk, 4)  # 4 MB left: under LISTEN_MIN_FREE_MB=8, room for the log
        third = write_ct_series(tmp_path / "third", slices=3, size=64)
        assert send(sorted((tmp_path / "third").iterdir()), listener, calling="LOWSPACE") == [0xA700] * 3
        time.sleep(1)
        assert study_jobs(listener, third) == []
        assert answers_echo(listener)
        log = log_text(listener)
    assert re.search(r"association from LOWSPACE \(127\.0\.0\.1\): only [0-9] MB free", log), log
    assert "under LISTEN_MIN_FREE_MB=8: instances are refused with Out of Resources (0xA700)" in log, log


# -- load ----------------------------------------------------------------------------------------------------
def test_eight_senders_and_twenty_idle_sockets(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    studies = {write_ct_series(tmp_path / f"s{i}", slices=6 + i): (f"LOAD{i}", 6 + i) for i in range(8)}
    with running_listener(tmp_path / "run", PIPELINE, pytestconfig, LISTEN_WORKERS="2") as listener:
        pid = listener_pid(listener)
        idle = [connect(listener) for _ in range(20)]
        try:
            codes: dict[str, int] = {}
            senders = [threading.Thread(target=lambda i=i, aet=aet: codes.__setitem__(
                aet, storescu(tmp_path / f"s{i}", listener.port, calling=aet).returncode))
                for i, (aet, _) in enumerate(studies.values())]
            for t in senders:
                t.start()
            assert answers_echo(listener, "DURINGLOAD")  # another caller is served meanwhile
            for t in senders:
                t.join()
            assert codes == {aet: 0 for aet, _ in studies.values()}
            done = wait_jobs(listener, 8, timeout=180)
        finally:
            for s in idle:
                s.close()
        assert answers_echo(listener)
        rss = memory_kb(pid)
        log = log_text(listener)
    assert len(done) == 8
    for job in done:
        aet, count = studies[job["study_instance_uid"]]
        assert job["state"] == "succeeded" and job["calling_aet"] == aet, job
        assert job["instances"] == count == len(job_files(listener, job)) == len(inventory(listener, job))
        assert {i["study"] for i in inventory(listener, job)} == {job["study_instance_uid"]}
        assert f"association from {aet} (127.0.0.1) released: {count} instance(s) stored" in log, log
    assert "rejected" not in log and rss < 400_000, rss
