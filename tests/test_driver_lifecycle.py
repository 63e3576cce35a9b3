"""The driver's lifecycle in-process: handler order, clara_payload, failures, timeouts, readiness, `env`."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import clara
from clara import Driver, Error, Payload, env
from clara.__main__ import show_environment

TIMEOUT_ERROR = "execute handler still running after 0.2s (NVIDIA_CLARA_TIMEOUT)"


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, str]:
    """A seed-like operator1 environment on tmp dirs, outside the platform (no readiness wait)."""
    (tmp_path / "pipeline_input").mkdir()
    return {
        env.INPUTPATHS: f"payload:{tmp_path}/pipeline_input",
        env.OUTPUTPATHS: f"operator1/segmentation-output:{tmp_path}/output",
        env.NOSYNCLOCK: "TRUE",
    }


def clara_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "clara" and r.levelno >= logging.ERROR]


def test_handlers_run_in_order_with_the_payload(dirs: dict[str, str], tmp_path: Path) -> None:
    calls: list[Any] = []

    def prepare(driver: Driver) -> bool:
        calls.append(("prepare", driver.payload, (tmp_path / "output").exists()))
        return True

    def execute(driver: Driver, payload: Payload) -> None:
        calls.append(("execute", payload.input_entries["payload"].path, (tmp_path / "output").is_dir()))
        (payload.output_entries["operator1/segmentation-output"].path / "result.txt").write_text("done")

    def cleanup(driver: Driver) -> bool:
        calls.append(("cleanup", driver.stage_name, driver.job_name))
        return True

    driver = Driver(execute_handler=execute, prepare_handler=prepare, cleanup_handler=cleanup, environ=dirs)
    driver.start()
    assert driver.wait_for_completion() is True
    assert driver.exit_code == clara.EXIT_OK
    assert calls == [
        ("prepare", None, False),  # before the inputs are ready: no payload yet, outputs not created
        ("execute", tmp_path / "pipeline_input", True),
        ("cleanup", "operator1", "local"),
    ]
    assert (tmp_path / "output" / "result.txt").read_text() == "done"
    assert driver.payload is not None and driver.payload.output_entries[0].path == tmp_path / "output"


def execute_reading_globals(driver: Driver, payload: Payload) -> None:
    """Module-level on purpose: the driver injects clara_payload into this module's globals."""
    seen["global"] = clara_payload  # type: ignore[name-defined]  # noqa: F821
    seen["module"] = clara.clara_payload
    seen["argument"] = payload


def cleanup_reading_globals(driver: Driver) -> None:
    seen["cleanup"] = clara_payload  # type: ignore[name-defined]  # noqa: F821


seen: dict[str, Any] = {}


def test_clara_payload_is_available_while_handlers_run(dirs: dict[str, str]) -> None:
    seen.clear()
    assert clara.clara_payload is None
    assert Driver(execute_reading_globals, cleanup_handler=cleanup_reading_globals, environ=dirs).run() == 0
    assert seen["global"] is seen["module"] is seen["argument"] is seen["cleanup"]
    assert seen["global"].input_entries["payload"].path.name == "pipeline_input"
    assert clara.clara_payload is None
    assert "clara_payload" not in globals()


def test_clara_payload_injected_for_bound_methods(dirs: dict[str, str]) -> None:
    class Operator:
        def execute(self, driver: Driver, payload: Payload) -> bool:
            return globals().get("clara_payload") is payload

    assert Driver(Operator().execute, environ=dirs).run() == clara.EXIT_OK


def test_raising_handler_fails_and_is_logged_once(dirs: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    cleaned = threading.Event()

    def execute(driver: Driver, payload: Payload) -> None:
        raise RuntimeError("model file unreadable")

    driver = Driver(execute, cleanup_handler=lambda d: cleaned.set(), environ=dirs)
    assert driver.run() == clara.EXIT_HANDLER_FAILED
    assert driver.wait_for_completion(exit_on_failure=False) is False
    with pytest.raises(SystemExit) as exited:
        driver.wait_for_completion()
    assert exited.value.code == clara.EXIT_HANDLER_FAILED
    errors = clara_errors(caplog)
    assert len(errors) == 1
    assert errors[0].getMessage() == "execute handler failed: RuntimeError: model file unreadable"
    assert errors[0].exc_info is not None
    assert cleaned.is_set(), "cleanup runs after a failed execute"


def test_handler_returning_false_fails(dirs: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    assert Driver(lambda d, p: False, environ=dirs).run() == clara.EXIT_HANDLER_FAILED
    assert [r.getMessage() for r in clara_errors(caplog)] == ["execute handler returned False"]


def test_handler_returning_none_or_true_succeeds(dirs: dict[str, str]) -> None:
    assert Driver(lambda d, p: None, environ=dirs).run() == clara.EXIT_OK
    assert Driver(lambda d, p: True, environ=dirs).run() == clara.EXIT_OK


def test_clara_error_from_handler_is_logged_without_traceback(
    dirs: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    def execute(driver: Driver, payload: Payload) -> None:
        raise Error("no NIfTI files under /input")

    assert Driver(execute, environ=dirs).run() == clara.EXIT_HANDLER_FAILED
    errors = clara_errors(caplog)
    assert [r.getMessage() for r in errors] == ["execute handler failed: no NIfTI files under /input"]
    assert errors[0].exc_info is None


def test_failed_prepare_skips_execute_but_cleans_up(dirs: dict[str, str]) -> None:
    calls: list[str] = []

    def prepare(driver: Driver) -> bool:
        calls.append("prepare")
        return False

    driver = Driver(lambda d, p: calls.append("execute"), prepare, lambda d: calls.append("cleanup"), environ=dirs)
    assert driver.run() == clara.EXIT_HANDLER_FAILED
    assert calls == ["prepare", "cleanup"]


def test_failed_cleanup_fails_the_operator(dirs: dict[str, str]) -> None:
    def cleanup(driver: Driver) -> None:
        raise OSError("cannot remove scratch")

    assert Driver(lambda d, p: True, cleanup_handler=cleanup, environ=dirs).run() == clara.EXIT_HANDLER_FAILED


def test_handler_timeout(dirs: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    def execute(driver: Driver, payload: Payload) -> None:
        release.wait(10)

    try:
        driver = Driver(execute, environ={**dirs, env.TIMEOUT: "0.2"})
        assert driver.run() == clara.EXIT_TIMEOUT
    finally:
        release.set()
    assert [r.getMessage() for r in clara_errors(caplog)] == [f"{TIMEOUT_ERROR}; the operator fails"]


def test_waits_for_the_readiness_signal(dirs: dict[str, str], tmp_path: Path) -> None:
    lock = tmp_path / "ready"
    environ = {**dirs, env.NOSYNCLOCK: "", env.SYNCLOCK_PATH: str(lock), env.SYNCLOCK_TIMEOUT: "10"}
    ran_after_lock: list[bool] = []
    timer = threading.Timer(0.3, lock.touch)
    timer.start()
    try:
        code = Driver(lambda d, p: ran_after_lock.append(lock.exists()), environ=environ).run()
    finally:
        timer.cancel()
    assert code == clara.EXIT_OK
    assert ran_after_lock == [True]


def test_readiness_wait_is_bounded(
    dirs: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {**dirs, env.NOSYNCLOCK: "0", env.SYNCLOCK_PATH: f"{tmp_path}/never", env.SYNCLOCK_TIMEOUT: "0.2"}
    calls: list[str] = []
    assert Driver(lambda d, p: calls.append("execute"), environ=environ).run() == clara.EXIT_ENVIRONMENT
    assert calls == []
    [error] = clara_errors(caplog)
    assert f"readiness signal {tmp_path}/never" in error.getMessage()
    assert "did not appear within 0.2s" in error.getMessage()
    assert "NVIDIA_CLARA_NOSYNCLOCK=TRUE" in error.getMessage()


@pytest.mark.parametrize("environ", [
    {env.INPUTPATHS: "payload:relative/dir", env.NOSYNCLOCK: "1"},
    {env.INPUTPATHS: "payload:/definitely/not/here", env.NOSYNCLOCK: "1"},
    {env.JOBID: "not-a-uuid"},
    {env.NOSYNCLOCK: "1"},
    {env.INPUTPATHS: "", env.OUTPUTPATHS: "op/out:/tmp/never-made", env.NOSYNCLOCK: "1"},
])
def test_bad_environment_fails_before_execute(environ: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    assert Driver(lambda d, p: calls.append("execute"), environ=environ).run() == clara.EXIT_ENVIRONMENT
    assert calls == []
    assert len(clara_errors(caplog)) == 1


def test_driver_properties(dirs: dict[str, str]) -> None:
    job = "0123456789abcdef0123456789abcdef"
    driver = Driver(lambda d, p: True, environ={**dirs, env.JOBID: job, env.JOBNAME: "liver"})
    assert driver.job_id.hex == job
    assert (driver.job_name, driver.stage_name) == ("liver", "operator1")
    assert driver.exit_code is None and driver.payload is None


def test_misuse_is_reported(dirs: dict[str, str]) -> None:
    with pytest.raises(TypeError, match="execute_handler must be callable"):
        Driver(execute_handler="main")  # type: ignore[arg-type]
    driver = Driver(lambda d, p: True, environ=dirs)
    with pytest.raises(Error, match="before start"):
        driver.wait_for_completion()
    driver.start()
    with pytest.raises(Error, match="called twice"):
        driver.start()
    assert driver.wait_for_completion() is True


# --- python -m clara env ------------------------------------------------------------------------------

def run_env_command(environ: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = show_environment(environ, out, err)
    return code, out.getvalue(), err.getvalue()


def test_env_command_shows_entries_and_existence(dirs: dict[str, str], tmp_path: Path) -> None:
    code, out, err = run_env_command(dirs)
    assert (code, err) == (0, "")
    assert "stage    operator1" in out
    assert "sync     off (NVIDIA_CLARA_NOSYNCLOCK)" in out
    lines = out.splitlines()
    assert any(line.split() == ["input", "payload", f"{tmp_path}/pipeline_input", "exists"] for line in lines)
    assert any(line.split()[:3] == ["output", "operator1/segmentation-output", f"{tmp_path}/output"]
               and line.endswith("missing (created at run)") for line in lines)
    assert not (tmp_path / "output").exists(), "the env command never creates anything"


def test_env_command_reports_a_missing_input(tmp_path: Path) -> None:
    code, out, err = run_env_command({env.INPUTPATHS: f"payload:{tmp_path}/gone"})
    assert code == 2
    assert "MISSING" in out
    assert err.startswith(f"error: {env.INPUTPATHS}: entry 'payload:{tmp_path}/gone'")
    assert len(err.splitlines()) == 1


def test_env_command_as_a_program_on_bad_env() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "clara", "env"], capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", env.INPUTPATHS: "payload", env.OUTPUTPATHS: ":/o"},
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (f"error: {env.INPUTPATHS}: entry 'payload' has no path; expected name:/absolute/path "
                           "entries separated by ';' (e.g. payload:/input or op/output:/output)\n")
