"""The dicom-reader's run: every series under the inputs -> selected, checked, written; the rest named."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..files import atomic_write_bytes
from .geometry import SeriesRefused
from .scan import scan
from .select import SelectionRules
from .volume import write_series

log = logging.getLogger("odk.dicom")
REPORT_NAME = "reader-report.json"


@dataclass
class ReadSummary:
    written: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def read_all(inputs: Sequence[Path], out_dir: Path, rules: SelectionRules, compress: bool = False) -> ReadSummary:
    summary = ReadSummary()
    t0 = time.perf_counter()
    roots = [p.resolve() for p in inputs]
    all_series = scan(roots)
    log.info("%d series found under %s in %.2f s", len(all_series), ", ".join(map(str, inputs)),
             time.perf_counter() - t0)
    for series in all_series:
        name = series.label()
        if not series.is_image():
            log.info("skipping %s: non-image object(s) (%s, SOP class %s)", name, series.modality,
                     series.first.get("SOPClassUID", "?"))
            summary.skipped.append((series.uid, "non-image"))
            continue
        why = rules.reason_to_skip(series)
        if why:
            log.info("not selected %s: %s", name, why)
            summary.skipped.append((series.uid, why))
            continue
        t1 = time.perf_counter()
        try:
            path, vol = write_series(series, out_dir, roots, compress)
        except SeriesRefused as exc:
            log.error("REFUSED %s: %s", name, exc)
            summary.refused.append((series.uid, str(exc)))
            continue
        log.info("selected %s: %d slices -> %s, shape %s, spacing %s mm, %s, %.2f s", name, vol.geometry.n,
                 path.name, "x".join(map(str, vol.data.shape)),
                 ",".join(f"{s:.3g}" for s in (*vol.geometry.pixel_spacing[::-1], vol.geometry.slice_spacing)),
                 vol.data.dtype, time.perf_counter() - t1)
        summary.written.append(series.uid)
    report = {"written": summary.written, "refused": dict(summary.refused), "skipped": dict(summary.skipped),
              "seconds": round(time.perf_counter() - t0, 3)}  # scan, decode and write, without start-up
    atomic_write_bytes(out_dir / REPORT_NAME, (json.dumps(report, indent=2) + "\n").encode())
    log.info("%d series written, %d refused, %d not selected or not images", len(summary.written),
             len(summary.refused), len(summary.skipped))
    return summary
