"""``python -u -m app.dicom.reader``: DICOM series -> NIfTI volumes + sidecars, under the pipeline driver.

Env: DICOM_SELECT_MODALITY (CT), DICOM_SELECT_MIN_SLICES (16), DICOM_SELECT_DESCRIPTION (regex, any),
DICOM_READER_COMPRESS (false: volumes are written as .nii, faster to write and to read; true: .nii.gz).
A refused series is named with its reason (and listed in reader-report.json); the other series still go
on, so the run exits 0 when at least one series was written, and non-zero when none was.
"""

from __future__ import annotations

import os

import clara

from app.config import flag

from .entry import OperatorFailure, main, require_entries
from .read import read_all
from .select import SelectionRules


def execute(driver: clara.Driver, payload: clara.Payload) -> bool:
    require_entries(payload, "payload:/input", "dicom-reader/volumes:/output")
    rules = SelectionRules.from_env(os.environ)
    compress = flag(os.environ, "DICOM_READER_COMPRESS", False)
    summary = read_all([e.path for e in payload.input_entries], payload.output_entries[0].path, rules, compress)
    if not summary.written and summary.refused:
        raise OperatorFailure(f"every selected series was refused ({len(summary.refused)}); the REFUSED lines above"
                              " say why")
    if not summary.written:
        raise OperatorFailure("no series selected: nothing to read (see the 'not selected' lines above; "
                              "DICOM_SELECT_MODALITY, DICOM_SELECT_MIN_SLICES, DICOM_SELECT_DESCRIPTION)")
    return True


if __name__ == "__main__":
    raise SystemExit(main(execute))
