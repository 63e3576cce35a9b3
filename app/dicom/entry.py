"""The common entry of the DICOM operators: logging from ODK_LOG_LEVEL, the ``clara`` driver, one-line errors."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable

import clara

from app.config import ConfigError, log_level

Execute = Callable[[clara.Driver, clara.Payload], bool]


class OperatorFailure(RuntimeError):
    """The run cannot complete; the message is the one line the driver logs."""


def require_entries(payload: clara.Payload, example_in: str, example_out: str) -> None:
    if not payload.input_entries:
        raise clara.Error(f"no input entry; set NVIDIA_CLARA_INPUTPATHS (e.g. {example_in})")
    if not payload.output_entries:
        raise clara.Error(f"no output entry; set NVIDIA_CLARA_OUTPUTPATHS (e.g. {example_out})")


def main(execute: Execute) -> int:
    try:
        level = log_level(os.environ)
    except ConfigError as exc:
        raise SystemExit(f"[odk] error: {exc}") from None
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("highdicom", "pydicom"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # register-results reports each failure itself

    def guarded(driver: clara.Driver, payload: clara.Payload) -> bool:
        try:
            return execute(driver, payload)
        except (ConfigError, OperatorFailure) as exc:
            raise clara.Error(str(exc)) from None  # the driver logs it as one line

    # The modules imported so far live as long as the process: the collector need not walk their objects again
    # (during the run, nor in the collections at exit, which otherwise cost ~60 ms of every operator's run).
    gc.freeze()
    code = clara.run(execute_handler=guarded)
    gc.freeze()  # and what the run made (highdicom's tables of the standard: ~0.25 s to walk at exit)
    return code
