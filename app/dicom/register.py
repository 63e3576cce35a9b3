"""``python -u -m app.dicom.register`` (register-results): C-STORE every DICOM object of the input to
DICOM_DESTINATION (``AET@host:port``, comma-separated), under the pipeline driver.

Writes register-report.json (a status per object and destination) to the output. Exits non-zero with one line
when a destination refuses an object or cannot be reached after the retries. Without DICOM_DESTINATION it
sends nothing, says so, and succeeds (the results stay in the pipeline's output).
"""

from __future__ import annotations

import json
import logging
import os

import odk
from odk.dicom import StoreConfig, scan, send

log = logging.getLogger("app.dicom.register")
REPORT_NAME = "register-report.json"


def execute(run: odk.Run) -> None:
    cfg = StoreConfig.from_env(os.environ)
    roots = [p.resolve() for p in run.inputs]
    instances = [i for s in scan(roots) for i in s.instances]
    out = run.output
    report: dict = {"objects": len(instances), "destinations": []}
    if not cfg.destinations:
        log.warning("DICOM_DESTINATION is not set: %d object(s) not sent anywhere (set it to AET@host:port, "
                    "e.g. ORTHANC@127.0.0.1:4242)", len(instances))
        report["skipped"] = "DICOM_DESTINATION not set"
        odk.atomic_write_bytes(out / REPORT_NAME, (json.dumps(report, indent=2) + "\n").encode())
        return
    if not instances:
        raise odk.OperatorError(f"no DICOM objects under {', '.join(map(str, roots))}: nothing to send")
    failures = []
    for dest in cfg.destinations:
        result = send(instances, dest, cfg, roots[0] if len(roots) == 1 else None)
        report["destinations"].append(result.as_dict())
        sent = sum(o.ok for o in result.objects)
        if result.ok:
            log.info("%s: %d object(s) stored in %.2f s", dest, sent, result.seconds)
        else:
            log.error("%s (%d of %d stored)", result.error, sent, len(result.objects))
            failures.append(result.error)
    odk.atomic_write_bytes(out / REPORT_NAME, (json.dumps(report, indent=2) + "\n").encode())
    if failures:
        raise odk.OperatorError(failures[0] + (f" (and {len(failures) - 1} more destination(s))"
                                             if len(failures) > 1 else "") + f"; see {REPORT_NAME}")


if __name__ == "__main__":
    raise SystemExit(odk.main(execute, example_input="dicom-seg-writer/seg:/input",
                              example_output="register-results/report:/output"))
