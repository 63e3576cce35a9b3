"""odk.dicom — the DICOM machinery of the operator library: series found and read with their geometry,
written as NIfTI volumes with a JSON sidecar, label maps written back as DICOM SEG on their series, and
DICOM objects sent to a destination (C-STORE). The DICOM operators (app/dicom/) are built on these.

>>> from odk.dicom import SelectionRules, read_all
>>> summary = read_all([Path("in")], Path("out"), SelectionRules.from_env(os.environ))

pydicom, highdicom and pynetdicom are imported only by the names that need them.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

_WHERE = {
    # DICOM series -> NIfTI + sidecar (the dicom-reader)
    "read_all": "to_nifti", "ReadSummary": "to_nifti", "SelectionRules": "select", "SeriesRefused": "geometry",
    "SeriesVolume": "volume", "series_volume": "volume", "nifti_bytes": "volume", "SIDECAR_SUFFIX": "volume",
    "scan": "series", "Series": "series", "Instance": "series", "read_instance": "series", "dicom_files": "series",
    # label maps -> DICOM SEG (the dicom-seg-writer)
    "write_all": "to_seg", "WriteSummary": "to_seg", "Algorithm": "seg", "SegError": "seg",
    # C-STORE to destinations (register-results, the listener's destination setting)
    "Destination": "store", "StoreConfig": "store", "parse_destination": "store",
    "parse_destinations": "store", "send": "store", "DestinationResult": "store",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'odk.dicom' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    _unshadow()
    return value


def _unshadow() -> None:
    """Importing a submodule sets it on this package under its own name: for ``scan``, a module named like the
    function it exports, that would hide the function from ``from odk.dicom import scan``."""
    for name, where in _WHERE.items():
        value = globals().get(name)
        if name == where and isinstance(value, ModuleType):
            globals()[name] = getattr(value, name)


def __dir__() -> list[str]:
    return __all__
