"""``python -u -m app.dicom.reader``: DICOM series -> NIfTI volumes + sidecars, under the pipeline driver.

Env: DICOM_SELECT_MODALITY (CT), DICOM_SELECT_MIN_SLICES (16), DICOM_SELECT_DESCRIPTION (regex, any),
DICOM_READER_COMPRESS (false: volumes are written as .nii, faster to write and to read; true: .nii.gz).
A refused series is named with its reason (and listed in reader-report.json); the other series still go
on, so the run exits 0 when at least one series was written, and non-zero when none was.
"""

from __future__ import annotations

import os

import odk
from odk.dicom import SelectionRules, read_all


def execute(run: odk.Run) -> None:
    rules = SelectionRules.from_env(os.environ)
    compress = odk.flag(os.environ, "DICOM_READER_COMPRESS", False)
    summary = read_all(list(run.inputs), run.output, rules, compress)
    if not summary.written and summary.refused:
        raise odk.OperatorError(f"every selected series was refused ({len(summary.refused)}); the REFUSED lines above"
                              " say why")
    if not summary.written:
        raise odk.OperatorError("no series selected: nothing to read (see the 'not selected' lines above; "
                              "DICOM_SELECT_MODALITY, DICOM_SELECT_MIN_SLICES, DICOM_SELECT_DESCRIPTION)")


if __name__ == "__main__":
    raise SystemExit(odk.main(execute, example_input="payload:/input", example_output="dicom-reader/volumes:/output"))
