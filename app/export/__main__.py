"""``python -u -m app.export``: the export operator under the pipeline driver."""

from __future__ import annotations

import logging
import os

import clara

from app.config import ConfigError, flag, log_level
from app.export import ExportError, export

log = logging.getLogger("app.export")


def execute(driver: clara.Driver, payload: clara.Payload) -> bool:
    if not payload.input_entries:
        raise clara.Error("no input entry; set NVIDIA_CLARA_INPUTPATHS (e.g. segmentation/segmentation:/input)")
    if not payload.output_entries:
        raise clara.Error("no output entry; set NVIDIA_CLARA_OUTPUTPATHS (e.g. export/summary:/output)")
    entries = [(e.name, e.path) for e in payload.input_entries]
    try:
        export(entries, payload.output_entries[0].path, driver.job_name, driver.stage_name,
               copy=flag(os.environ, "EXPORT_COPY_LABELS", True))
    except (ConfigError, ExportError) as exc:
        raise clara.Error(str(exc)) from None  # the driver logs it as one line
    return True


def main() -> int:
    try:
        level = log_level(os.environ)
    except ConfigError as exc:
        raise SystemExit(f"[odk] error: {exc}") from None
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return clara.run(execute_handler=execute)


raise SystemExit(main())
