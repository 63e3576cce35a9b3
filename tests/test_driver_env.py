"""The driver's environment rules: payload entry strings, filesystem checks, job/stage/sync settings."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

import clara
from clara import Error, Payload, PayloadEntries, PayloadEntry, env
from clara.config import DriverConfig
from clara.payload import check_payload, parse_entries

IN = env.INPUTPATHS
OUT = env.OUTPUTPATHS


def names_and_paths(entries: PayloadEntries) -> list[tuple[str, str]]:
    return [(e.name, str(e.path)) for e in entries]


# --- good entry strings -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("payload:/input", [("payload", "/input")]),
        ("payload:/input;", [("payload", "/input")]),
        ("  payload : /input ;  ", [("payload", "/input")]),
        ("\tpayload:/input\n", [("payload", "/input")]),
        (":/input", [("", "/input")]),
        ("payload:/a;op1/out:/b", [("payload", "/a"), ("op1/out", "/b")]),
        ("payload:/a ; op1/out:/b ; :/c ;", [("payload", "/a"), ("op1/out", "/b"), ("", "/c")]),
        ("x:/with:colon/in:path", [("x", "/with:colon/in:path")]),
        ("payload:/dir with spaces/x", [("payload", "/dir with spaces/x")]),
        ("", []),
        ("   ", []),
    ],
)
def test_good_entry_strings(text: str, expected: list[tuple[str, str]]) -> None:
    assert names_and_paths(parse_entries(text, IN)) == expected


def test_entries_are_frozen_dataclasses_with_path_objects() -> None:
    entry = parse_entries("payload:/input", IN)[0]
    assert entry == PayloadEntry("payload", Path("/input"))
    with pytest.raises(AttributeError):
        entry.name = "other"  # type: ignore[misc]


# --- bad entry strings: clara.Error quoting the entry and the expected form ---------------------------

@pytest.mark.parametrize(
    ("text", "quoted", "reason"),
    [
        ("payload", "'payload'", "has no path"),
        ("payload:", "'payload:'", "has no path"),
        ("payload:   ", "'payload:'", "has no path"),
        ("/input", "'/input'", "has no name (e.g. payload:/input)"),
        ("payload:input", "'payload:input'", "relative path 'input'"),
        ("payload:./input", "'payload:./input'", "relative path './input'"),
        ("payload:~/input", "'payload:~/input'", "relative path '~/input'"),
        ("payload:/a;payload:/b", "'payload:/b'", "repeats name 'payload'"),
        (":/a;:/b", "':/b'", "repeats the empty name"),
        ("payload:/a;;op/out:/b", "'payload:/a;;op/out:/b'", "empty entry"),
        (";payload:/a", "';payload:/a'", "empty entry"),
        (";", "';'", "empty entry"),
        ("pay load:/a", "'pay load:/a'", "bad name 'pay load'"),
        ("a/b/c:/a", "'a/b/c:/a'", "bad name 'a/b/c'"),
        ("op/:/a", "'op/:/a'", "bad name 'op/'"),
    ],
)
def test_bad_entry_strings(text: str, quoted: str, reason: str) -> None:
    with pytest.raises(Error) as caught:
        parse_entries(text, OUT)
    message = str(caught.value)
    assert message.startswith(f"{OUT}: ")
    assert quoted in message
    assert reason in message
    assert "expected name:/absolute/path entries separated by ';'" in message


def test_empty_name_allowed_once_per_side() -> None:
    payload = Payload.from_environ({IN: ":/in", OUT: ":/out"})
    assert payload.input_entries[""].path == Path("/in")
    assert payload.output_entries[""].path == Path("/out")


# --- lookup by name -----------------------------------------------------------------------------------

def test_entries_are_a_sequence_and_a_lookup_by_name() -> None:
    entries = parse_entries("payload:/a;op1/out:/b", IN)
    assert len(entries) == 2
    assert [e.name for e in entries] == ["payload", "op1/out"]
    assert entries[1] is entries["op1/out"] is entries.by_name("op1/out") is entries.get("op1/out")
    assert entries[-1].path == Path("/b")
    assert names_and_paths(entries[:1]) == [("payload", "/a")]
    assert entries.names == ("payload", "op1/out")
    assert "payload" in entries and "missing" not in entries
    assert entries[0] in entries
    assert entries.get("missing") is None
    with pytest.raises(KeyError, match="no payload entry named 'missing'"):
        entries["missing"]
    with pytest.raises(IndexError):
        entries[2]


def test_entries_refuse_duplicates_when_built_directly() -> None:
    with pytest.raises(Error, match="duplicate"):
        PayloadEntries([PayloadEntry("a", Path("/x")), PayloadEntry("a", Path("/y"))])


# --- the seed's two operators -------------------------------------------------------------------------

def test_seed_operator1() -> None:
    config = DriverConfig.from_environ(
        {IN: "payload:/pipeline_input", OUT: "operator1/segmentation-output:/output"}
    )
    assert names_and_paths(config.payload.input_entries) == [("payload", "/pipeline_input")]
    assert names_and_paths(config.payload.output_entries) == [("operator1/segmentation-output", "/output")]
    assert config.stage_name == "operator1"


def test_seed_operator2() -> None:
    config = DriverConfig.from_environ(
        {IN: "operator1/segmentation-output:/input", OUT: "operator2/final-output:/output"}
    )
    assert config.payload.input_entries["operator1/segmentation-output"].path == Path("/input")
    assert config.payload.output_entries["operator2/final-output"].path == Path("/output")
    assert config.stage_name == "operator2"


def test_seed_pipeline_on_disk(tmp_path: Path) -> None:
    """operator1's output directory is operator2's input: check both, creating the outputs."""
    pipeline_input = tmp_path / "pipeline_input"
    pipeline_input.mkdir()
    op1_out = tmp_path / "operator1" / "output"
    op1 = Payload.from_environ(
        {IN: f"payload:{pipeline_input}", OUT: f"operator1/segmentation-output:{op1_out}"}
    )
    check_payload(op1, create_outputs=True)
    assert op1_out.is_dir()
    op2_out = tmp_path / "operator2" / "output"
    op2 = Payload.from_environ(
        {IN: f"operator1/segmentation-output:{op1_out}", OUT: f"operator2/final-output:{op2_out}"}
    )
    check_payload(op2, create_outputs=True)
    assert op2_out.is_dir()


# --- filesystem rules ---------------------------------------------------------------------------------

def test_missing_input_directory_is_an_error(tmp_path: Path) -> None:
    payload = Payload.from_environ({IN: f"payload:{tmp_path}/absent"})
    expected = rf"{IN}: entry 'payload:{tmp_path}/absent'.*does not exist; create it or point the entry at"
    with pytest.raises(Error, match=expected):
        check_payload(payload, create_outputs=True)


def test_input_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "file.nii").write_bytes(b"x")
    payload = Payload.from_environ({IN: f"payload:{tmp_path}/file.nii"})
    with pytest.raises(Error, match=r"is not a directory; point the entry at a folder"):
        check_payload(payload, create_outputs=True)


def test_outputs_are_created_only_when_asked(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "out"
    payload = Payload.from_environ({OUT: f"op/out:{out}"})
    check_payload(payload, create_outputs=False)
    assert not out.exists()
    check_payload(payload, create_outputs=True)
    assert out.is_dir()
    check_payload(payload, create_outputs=True)  # existing directory is fine


def test_output_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    payload = Payload.from_environ({OUT: f"op/out:{tmp_path}/taken"})
    with pytest.raises(Error, match=rf"{OUT}: entry 'op/out:{tmp_path}/taken'.*not a directory"):
        check_payload(payload, create_outputs=True)


# --- job, stage, sync and timeout settings ------------------------------------------------------------

def test_local_defaults() -> None:
    config = DriverConfig.from_environ({})
    assert isinstance(config.job_id, uuid.UUID) and config.job_id.version == 4
    assert config.job_name == "local"
    assert config.stage_name == "operator"
    assert config.sync is True
    assert config.synclock_path == Path(env.DEFAULT_SYNCLOCK_PATH)
    assert config.synclock_timeout == 300
    assert config.handler_timeout is None
    assert len(config.payload.input_entries) == 0 and len(config.payload.output_entries) == 0
    assert DriverConfig.from_environ({}).job_id != config.job_id


def test_platform_values() -> None:
    config = DriverConfig.from_environ({
        env.JOBID: "0123456789abcdef0123456789ABCDEF",
        env.JOBNAME: "liver-job",
        env.STAGENAME: "segmentation",
        OUT: "operator1/out:/o",
        env.NOSYNCLOCK: "TRUE",
        env.SYNCLOCK_PATH: "/tmp/ready.lock",
        env.SYNCLOCK_TIMEOUT: "2.5",
        env.TIMEOUT: "60",
    })
    assert config.job_id == uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
    assert (config.job_name, config.stage_name) == ("liver-job", "segmentation")
    assert config.sync is False
    assert config.synclock_path == Path("/tmp/ready.lock")
    assert (config.synclock_timeout, config.handler_timeout) == (2.5, 60.0)


@pytest.mark.parametrize(("value", "sync"), [
    ("TRUE", False), ("true", False), ("1", False), ("yes", False), (" On ", False),
    ("", True), ("0", True), ("false", True), ("FALSE", True), ("no", True),
])
def test_nosynclock_values(value: str, sync: bool) -> None:
    assert DriverConfig.from_environ({env.NOSYNCLOCK: value}).sync is sync


@pytest.mark.parametrize(("variable", "value", "match"), [
    (env.NOSYNCLOCK, "maybe", "NVIDIA_CLARA_NOSYNCLOCK='maybe' is not a boolean"),
    (env.TIMEOUT, "ten", "NVIDIA_CLARA_TIMEOUT='ten': expected a number of seconds >= 0"),
    (env.TIMEOUT, "-1", "NVIDIA_CLARA_TIMEOUT='-1': expected a number of seconds >= 0"),
    (env.TIMEOUT, "inf", "NVIDIA_CLARA_TIMEOUT='inf': expected a number of seconds >= 0"),
    (env.SYNCLOCK_TIMEOUT, "nan", "NVIDIA_CLARA_SYNCLOCK_TIMEOUT='nan': expected a number of seconds >= 0"),
    (env.JOBID, "job-1", "NVIDIA_CLARA_JOBID='job-1' is not a UUID"),
])
def test_bad_settings(variable: str, value: str, match: str) -> None:
    with pytest.raises(Error, match=match):
        DriverConfig.from_environ({variable: value})


def test_stage_name_from_first_op_output() -> None:
    assert DriverConfig.from_environ({OUT: ":/x;seg/out:/y;other/out:/z"}).stage_name == "seg"
    assert DriverConfig.from_environ({OUT: "out:/x"}).stage_name == "operator"


def test_env_variable_names_are_exported() -> None:
    assert env.ALL == (
        "NVIDIA_CLARA_INPUTPATHS", "NVIDIA_CLARA_OUTPUTPATHS", "NVIDIA_CLARA_JOBID", "NVIDIA_CLARA_JOBNAME",
        "NVIDIA_CLARA_STAGENAME", "NVIDIA_CLARA_NOSYNCLOCK", "NVIDIA_CLARA_SYNCLOCK_PATH",
        "NVIDIA_CLARA_SYNCLOCK_TIMEOUT", "NVIDIA_CLARA_TIMEOUT",
    )
    assert clara.env is env
