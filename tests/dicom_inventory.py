"""A small operator for the listener's tests: lists the DICOM instances of its input as inventory.json.

Run by tests/data/listener/inventory-pipeline.yml (RUNTIME=host). INVENTORY_MIN_INSTANCES: fail (exit 1,
one line) when the study has fewer instances, which gives the tests a pipeline that really fails;
INVENTORY_HOLD_S: keep running that long first (a job that is still running when the listener stops).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pydicom


def entries(var: str) -> dict[str, Path]:
    pairs = (item.partition(":") for item in os.environ.get(var, "").split(";") if item)
    return {name: Path(path) for name, _, path in pairs}


def main() -> int:
    source = entries("NVIDIA_CLARA_INPUTPATHS")["payload"]
    target = next(iter(entries("NVIDIA_CLARA_OUTPUTPATHS").values()))
    found = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        found.append({"file": str(path.relative_to(source)), "study": ds.StudyInstanceUID,
                      "series": ds.SeriesInstanceUID, "sop": ds.SOPInstanceUID, "modality": ds.Modality})
    time.sleep(float(os.environ.get("INVENTORY_HOLD_S") or 0))
    least = int(os.environ.get("INVENTORY_MIN_INSTANCES") or 0)
    if len(found) < least:
        print(f"[odk] error: the study has {len(found)} instance(s), fewer than INVENTORY_MIN_INSTANCES={least}")
        return 1
    target.mkdir(parents=True, exist_ok=True)
    (target / "inventory.json").write_text(json.dumps(found, indent=2) + "\n", encoding="utf-8")
    print(f"{len(found)} instance(s) listed in {target / 'inventory.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
