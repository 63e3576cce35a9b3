"""Entry point: the driver hands over the payload, the operator processes it.

Run as ``python -u -m app`` (the image's entry point). Configuration comes from the environment
(env.list); the payload from NVIDIA_CLARA_INPUTPATHS / NVIDIA_CLARA_OUTPUTPATHS through the driver.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import clara

from . import operator, stopping
from .config import ConfigError, from_env, log_level
from .errors import Interrupted, RunError, shown
from .model import ModelMismatch

log = logging.getLogger("app")
# After NVIDIA_CLARA_TIMEOUT the handler's thread still runs: it gets at most this long to unwind (remove what
# it staged in the output folder, release its shared-memory regions) before the process ends with 124.
TIMEOUT_UNWIND_S = 15.0


def execute(driver: clara.Driver, payload: clara.Payload) -> bool:
    cfg = from_env()
    if not payload.input_entries:
        raise clara.Error("the payload has no input entry; set NVIDIA_CLARA_INPUTPATHS (e.g. payload:/input)")
    if not payload.output_entries:
        raise clara.Error("the payload has no output entry; set NVIDIA_CLARA_OUTPUTPATHS (e.g. op/out:/output)")
    if len(payload.output_entries) > 1:
        log.info("several output entries; writing to the first, %s", payload.output_entries[0].name)
    output = payload.output_entries[0].path
    inputs = [entry.path for entry in payload.input_entries]
    log.info("job %s, operator %s: %s -> %s", driver.job_name, driver.stage_name,
             ", ".join(f"{e.name}:{shown(e.path)}" for e in payload.input_entries), shown(output))
    summary = operator.run(inputs, output, cfg)
    if summary.failed:
        names = ", ".join(shown(p.name) for p, _reason in summary.failed[:10])
        names += ", ..." if len(summary.failed) > 10 else ""
        raise clara.Error(f"{len(summary.failed)} of {len(summary.failed) + len(summary.done)} studies failed"
                          f" ({names}); the lines above say why")
    return True


def main() -> int:
    try:
        level = log_level(os.environ)
    except ConfigError as exc:
        level = "INFO"
        bad_level: ConfigError | None = exc
    else:
        bad_level = None
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Problems that concern the whole run are reported as one line, without a traceback.
    for noisy in ("tritonclient",):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    unwound = threading.Event()

    def guarded(driver: clara.Driver, payload: clara.Payload) -> bool:
        # Problems of the whole run become clara.Error: the driver logs them as one line, no traceback.
        if bad_level is not None:
            raise clara.Error(str(bad_level))
        try:
            return execute(driver, payload)
        except (ConfigError, ModelMismatch, RunError) as exc:
            raise clara.Error(str(exc)) from None
        except (Interrupted, KeyboardInterrupt):
            stop = stopping.received()
            name = stop.name if stop else "SIGINT"
            raise clara.Error(f"stopped by {name}; studies not finished have no outputs, run again to"
                              " process them") from None
        finally:
            unwound.set()

    for variable, example in (("NVIDIA_CLARA_INPUTPATHS", "payload:/input"),
                              ("NVIDIA_CLARA_OUTPUTPATHS", "op/out:/output")):
        if not os.environ.get(variable, "").strip():  # a bad payload environment: exit 2, as the driver's
            logging.getLogger("clara").error("%s is empty or unset; set it (e.g. %s)", variable, example)
            return 2
    stopping.install()
    code = clara.Driver(execute_handler=guarded).run()
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


if __name__ == "__main__":
    raise SystemExit(main())
