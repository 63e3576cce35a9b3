"""``python -u -m app.export``: the export operator under the pipeline driver."""

from __future__ import annotations

import logging
import os

import clara

from app.export import ExportError, copy_enabled, export

log = logging.getLogger("app.export")


def execute(driver: clara.Driver, payload: clara.Payload) -> bool:
    if not payload.input_entries:
        raise clara.Error("no input entry; set NVIDIA_CLARA_INPUTPATHS (e.g. segmentation/segmentation:/input)")
    if not payload.output_entries:
        raise clara.Error("no output entry; set NVIDIA_CLARA_OUTPUTPATHS (e.g. export/summary:/output)")
    entries = [(e.name, e.path) for e in payload.input_entries]
    try:
        export(entries, payload.output_entries[0].path, driver.job_name, driver.stage_name,
               copy=copy_enabled(os.environ))
    except ExportError as exc:
        log.error("%s", exc)
        return False
    return True


def main() -> int:
    logging.basicConfig(level=os.environ.get("ODK_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return clara.run(execute_handler=execute)


raise SystemExit(main())
