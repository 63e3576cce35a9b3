"""The one entry point of every operator: the driver wiring, logging, signals, exit codes, and the study loop.

:func:`main` runs an operator's ``execute(run)`` under the ``clara`` pipeline driver: logging from
ODK_LOG_LEVEL, the payload's entries checked (one line naming the variable to set), SIGINT/SIGTERM turned
into a clean stop, NVIDIA_CLARA_TIMEOUT honoured (exit 124, the work unwound first), and every problem of
the whole run said in one line without a traceback (exit 1).

:func:`study_operator` turns a ``process(study, session, model)`` function into such an ``execute``: it finds
the studies under the inputs, opens the Triton session, and applies the two kinds of failure (docs/failures.md):
a study's own problem (StudyError) is logged with its reason and the other studies still run, the run failing
at the end; a run-level problem (RunError: Triton gone, out of memory, the output folder unusable) stops the
run at once with one line. An unexpected exception (a defect of the operator) fails its study and is logged
with its traceback, once per defect (its type and the place it was raised).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import clara

from . import stopping
from .config import ConfigError, from_env, log_level
from .errors import Interrupted, RunError, StudyError, output_failure, shown
from .files import RunSummary, Study, check_no_overlap, check_writable, find_studies
from .model import ModelMismatch
from .report import StudyResult

log = logging.getLogger("odk")
# After NVIDIA_CLARA_TIMEOUT the handler's thread still runs: it gets at most this long to unwind (remove what
# it staged in the output folder, release its shared-memory regions) before the process ends with 124.
TIMEOUT_UNWIND_S = 15.0
QUIET_LOGGERS = ("tritonclient", "highdicom", "pydicom")


class OperatorError(RunError):
    """The run as a whole cannot proceed (no inputs, unusable output folder, Triton unavailable...); the
    message is the one line logged."""


@dataclass(frozen=True)
class Run:
    """What the driver hands an operator: its input folders (all entries), its output folder (the first
    output entry), and the job and stage names.

    >>> def execute(run: Run) -> None:
    ...     for folder in run.inputs: ...
    """

    inputs: tuple[Path, ...]
    output: Path
    job: str
    stage: str
    input_names: tuple[str, ...] = ()

    @property
    def entries(self) -> list[tuple[str, Path]]:
        """(name, path) of each input entry (``payload``, ``upstream-op/output-name``...)."""
        return list(zip(self.input_names, self.inputs, strict=True))


Execute = Callable[[Run], None]
# An operator's prepare step: given the open session, check the model and return what process needs of it.
Prepare = Callable[[Any], Any]
# An operator's work on one study: returns its result (the report it wrote).
Process = Callable[[Study, Any, Any], StudyResult]


def main(execute: Execute, *, example_input: str = "payload:/input",
         example_output: str = "op/out:/output") -> int:
    """Run ``execute`` under the pipeline driver; the process's exit code.

    >>> if __name__ == "__main__":
    ...     raise SystemExit(odk.main(odk.study_operator(process, prepare)))
    """
    try:
        level = log_level(os.environ)
        bad_level: ConfigError | None = None
    except ConfigError as exc:
        level, bad_level = "INFO", exc
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in QUIET_LOGGERS:  # problems that concern the whole run are reported as one line, no traceback
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # register-results reports each failure itself
    for variable, example in (("NVIDIA_CLARA_INPUTPATHS", example_input), ("NVIDIA_CLARA_OUTPUTPATHS", example_output)):
        if not os.environ.get(variable, "").strip():  # a bad payload environment: exit 2, as the driver's
            logging.getLogger("clara").error("%s is empty or unset; set it (e.g. %s)", variable, example)
            return 2
    unwound = threading.Event()

    def guarded(driver: clara.Driver, payload: clara.Payload) -> bool:
        # Problems of the whole run become clara.Error: the driver logs them as one line, no traceback.
        try:
            if bad_level is not None:
                raise bad_level
            if not payload.input_entries:
                raise ConfigError("the payload has no input entry; set NVIDIA_CLARA_INPUTPATHS"
                                  f" (e.g. {example_input})")
            if not payload.output_entries:
                raise ConfigError("the payload has no output entry; set NVIDIA_CLARA_OUTPUTPATHS"
                                  f" (e.g. {example_output})")
            if len(payload.output_entries) > 1:
                log.info("several output entries; writing to the first, %s", payload.output_entries[0].name)
            run = Run(inputs=tuple(e.path for e in payload.input_entries), output=payload.output_entries[0].path,
                      job=driver.job_name, stage=driver.stage_name,
                      input_names=tuple(e.name for e in payload.input_entries))
            execute(run)
            return True
        except (ConfigError, ModelMismatch, RunError) as exc:
            raise clara.Error(str(exc)) from None
        except (Interrupted, KeyboardInterrupt):
            stop = stopping.received()
            name = stop.name if stop else "SIGINT"
            raise clara.Error(f"stopped by {name}; studies not finished have no outputs, run again to"
                              " process them") from None
        finally:
            unwound.set()

    stopping.install()
    # The modules imported so far live as long as the process: the collector need not walk their objects again
    # (during the run, nor in the collections at exit, which otherwise cost ~60 ms of every operator's run).
    gc.freeze()
    code = clara.Driver(execute_handler=guarded).run()
    gc.freeze()  # and what the run made (e.g. highdicom's tables of the standard: ~0.25 s to walk at exit)
    if code == clara.EXIT_TIMEOUT:
        # The driver gave up on the handler, whose thread Python cannot stop: ask it to stop as a signal would,
        # so that it unwinds through its clean-up, then end at once (a handler stuck elsewhere cannot hold the
        # process longer than TIMEOUT_UNWIND_S).
        stopping.request(Interrupted(signal.SIGALRM, "NVIDIA_CLARA_TIMEOUT"))
        unwound.wait(TIMEOUT_UNWIND_S)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    stop = stopping.received()
    return 128 + stop.signum if stop else code


class Defects:
    """The unexpected exceptions of a run, told apart by type and the place they were raised: each one's
    traceback is logged once, and a study failing with one seen before points at that traceback."""

    def __init__(self) -> None:
        self._first: dict[tuple[str, str, int], Path] = {}

    @staticmethod
    def key(exc: BaseException) -> tuple[str, str, int]:
        frames = traceback.extract_tb(exc.__traceback__)
        where = (frames[-1].filename, frames[-1].lineno or 0) if frames else ("", 0)
        return (type(exc).__qualname__, *where)

    def reason(self, exc: BaseException, src: Path) -> str:
        """Log the traceback of a defect not seen before; the one-line reason for ``src``'s FAILED line."""
        what = f"unexpected {type(exc).__name__}: {str(exc)[:200]!r}"
        first = self._first.setdefault(self.key(exc), src)
        if first is src:
            log.error("unexpected error in %s (a defect of the operator):", shown(src), exc_info=exc)
            return f"{what} (traceback above)"
        return f"{what} (the same defect as in {shown(first)}: traceback above)"


def _run_level(exc: BaseException, study: Study) -> RunError | None:
    """The RunError that ``exc`` amounts to, or None when it concerns this study alone."""
    if isinstance(exc, RunError):
        return exc
    if isinstance(exc, MemoryError):
        return RunError(f"out of memory while processing {shown(study.src)}; free memory or lower"
                        " ODK_MAX_MEMORY_MB so that such studies are refused instead")
    if isinstance(exc, OSError):
        return output_failure(exc, study.out_dir)
    return None


def run_studies(inputs: Sequence[Path], output: Path, setup: Callable[[], Callable[[Study], StudyResult]],
                find: Callable[[Sequence[Path], Path, RunSummary], list[Study]] = find_studies) -> RunSummary:
    """Process every study ``find`` gives under ``inputs`` with the function ``setup()`` returns (called once,
    after the studies are found and the output folder is known to be writable: it opens what the studies
    share, e.g. the Triton session). A bad study is recorded in the summary (its FAILED line logged); a
    run-level problem raises RunError."""
    summary = RunSummary()
    check_no_overlap(inputs, output)
    studies = find(inputs, output, summary)
    if not studies and not summary.failed:
        names = ", ".join(shown(p) for p in inputs)
        raise OperatorError(f"no NIfTI studies (.nii / .nii.gz) found under {names}; put studies there or"
                            " fix INPUT_DIR / NVIDIA_CLARA_INPUTPATHS")
    check_writable(output)
    process = setup()
    defects = Defects()
    for study in studies:
        stopping.check()
        try:
            result = process(study)
        except StudyError as exc:
            summary.fail(study.src, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            continue
        except Exception as exc:
            stop = _run_level(exc, study)
            if stop is not None:
                done = f"{len(summary.done)} of {len(studies)} studies done before"
                raise type(stop)(f"{stop} ({done}; their outputs are complete)") from None
            summary.fail(study.src, defects.reason(exc, study.src))
            continue
        for warning in result.warnings:
            log.warning("%s: %s", shown(study.src.name), warning)
        timings = " ".join(f"{k} {v:.2f}s" for k, v in result.timings_s.items())
        log.info("done %s: %s | %s", shown(study.src.name), summary_line(result), timings)
        summary.done.append(study.src)
    log.info("%d studies processed, %d failed, %d files skipped", len(summary.done), len(summary.failed),
             len(summary.skipped))
    return summary


def summary_line(result: StudyResult) -> str:
    """A study's result in a few words for its ``done`` line: its own fields that are numbers or words."""
    parts = []
    for key, value in result.own_fields().items():
        if key.endswith("_volume_ml") and isinstance(value, float | int):
            parts.append(f"{key.removesuffix('_volume_ml')} {value:.1f} mL")
        elif isinstance(value, bool | str):
            parts.append(f"{key} {value}")
        elif isinstance(value, float):
            parts.append(f"{key} {value:.3g}")
    return ", ".join(parts)


def study_operator(process: Process, prepare: Prepare | None = None, *, triton: bool = True) -> Execute:
    """An ``execute`` for :func:`main` that runs ``process(study, session, model)`` on every study under the
    inputs, within one Triton session (``triton=False``: session None). ``prepare(session)`` runs once, after
    the session is open and the model described: it checks the model (raise ModelMismatch) and returns what
    ``process`` needs of it (``model``). The run fails at the end when any study failed.

    >>> raise SystemExit(main(study_operator(process, prepare)))
    """
    from .triton import TritonSession  # here: an operator without Triton does not import tritonclient

    def execute(run: Run) -> None:
        cfg = from_env()
        log.info("job %s, operator %s: %s -> %s", run.job, run.stage,
                 ", ".join(f"{name}:{shown(path)}" for name, path in run.entries), shown(run.output))
        with contextlib.ExitStack() as stack:

            def setup() -> Callable[[Study], StudyResult]:
                session = stack.enter_context(TritonSession.open(cfg)) if triton else None
                model = prepare(session) if prepare is not None else None
                return lambda study: process(study, session, model)

            summary = run_studies(run.inputs, run.output, setup)
        if summary.failed:
            names = ", ".join(shown(p.name) for p, _reason in summary.failed[:10])
            names += ", ..." if len(summary.failed) > 10 else ""
            raise OperatorError(f"{len(summary.failed)} of {len(summary.failed) + len(summary.done)} studies failed"
                                f" ({names}); the lines above say why")

    return execute
