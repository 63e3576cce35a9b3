"""DICOM operators of the kit, in the same image as the segmentation operator.

- ``python -u -m app.dicom.reader``: DICOM series -> one NIfTI volume (RAS, HU) + JSON sidecar per series.
- ``python -u -m app.dicom.segwriter``: label maps + their source series -> one DICOM SEG per series.
- ``python -u -m app.dicom.register``: C-STORE of every DICOM object of the input to DICOM_DESTINATION.
"""

from __future__ import annotations

import sys


def _operator_program(argv: list[str]) -> bool:
    """True when this process runs one of these operators (``python [options] -m app.dicom.<operator>``)."""
    return "-m" in argv[:-1] and argv[argv.index("-m") + 1].startswith(f"{__name__}.")


# pydicom imports ``requests`` when it is installed (``pydicom.data`` downloads pydicom's own test files with
# it): ~50 ms of every start. The operators never download those files and the operator image has no requests
# (only the kit's development tools bring it), so an operator's process marks it absent and pydicom takes its
# path for a machine without it. Other processes that import these modules (tests, the kit) are left alone.
if _operator_program(sys.orig_argv):
    sys.modules.setdefault("requests", None)  # type: ignore[assignment]  # "import requests" -> ImportError
