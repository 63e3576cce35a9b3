"""The operator's execute step: every NIfTI study under the input entries -> the output entry.

Two kinds of failure (see app.errors and docs/failures.md): a study's own problem is logged with its
reason and the other studies still run, the run failing at the end; a run-level problem (Triton gone,
out of memory, the output folder unusable) stops the run at once with one line. An unexpected exception
(a defect of the operator) fails its study and is logged with its traceback, once per defect (its type
and the place it was raised).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from pathlib import Path

from . import stopping
from .config import OperatorConfig
from .discover import RunSummary, Study, check_no_overlap, find_studies
from .errors import RunError, StudyError, output_failure, shown
from .inference import TritonSession
from .outputs import check_writable
from .study import process_study

log = logging.getLogger("app")
__all__ = ["OperatorError", "RunSummary", "Study", "find_studies", "run"]


class OperatorError(RunError):
    """The run as a whole cannot proceed (no inputs, unusable output folder, Triton unavailable...)."""


def _run_level(exc: BaseException, study: Study) -> RunError | None:
    """The RunError that ``exc`` amounts to, or None when it concerns this study alone."""
    if isinstance(exc, RunError):
        return exc
    if isinstance(exc, MemoryError):
        return RunError(f"out of memory while processing {shown(study.src)}; free memory or lower"
                        " ODK_MAX_MEMORY_MB so that such studies are refused instead")
    if isinstance(exc, OSError):
        return output_failure(exc, study.out_dir)
    return None


class Defects:
    """The unexpected exceptions of a run, told apart by type and the place they were raised: each one's
    traceback is logged once, and a study failing with one seen before points at that traceback."""

    def __init__(self) -> None:
        self._first: dict[tuple[str, str, int], Path] = {}

    @staticmethod
    def key(exc: BaseException) -> tuple[str, str, int]:
        frames = traceback.extract_tb(exc.__traceback__)
        where = (frames[-1].filename, frames[-1].lineno or 0) if frames else ("", 0)
        return (type(exc).__qualname__, *where)

    def reason(self, exc: BaseException, src: Path) -> str:
        """Log the traceback of a defect not seen before; the one-line reason for ``src``'s FAILED line."""
        what = f"unexpected {type(exc).__name__}: {str(exc)[:200]!r}"
        first = self._first.setdefault(self.key(exc), src)
        if first is src:
            log.error("unexpected error in %s (a defect of the operator):", shown(src), exc_info=exc)
            return f"{what} (traceback above)"
        return f"{what} (the same defect as in {shown(first)}: traceback above)"


def run(inputs: Sequence[Path], output: Path, cfg: OperatorConfig) -> RunSummary:
    """Process every study; a bad study is recorded in the summary, a run-level problem raises RunError."""
    summary = RunSummary()
    check_no_overlap(inputs, output)
    studies = find_studies(inputs, output, summary)
    if not studies and not summary.failed:
        names = ", ".join(shown(p) for p in inputs)
        raise OperatorError(f"no NIfTI studies (.nii / .nii.gz) found under {names}; put studies there or"
                            " fix INPUT_DIR / NVIDIA_CLARA_INPUTPATHS")
    check_writable(output)
    defects = Defects()
    with TritonSession.open(cfg) as session:
        spec, transport = session.spec, session.transport
        assert spec is not None
        log.info("model %s v%s: window %s at %s mm, HU window %s, batch %d, transport %s, engine %s", spec.name,
                 spec.version, "x".join(map(str, spec.roi)), ",".join(f"{s:g}" for s in spec.spacing_mm),
                 ",".join(f"{w:g}" for w in spec.hu_window), session.batch_capacity(), transport, session.engine)
        predict = session.predictor()
        for study in studies:
            stopping.check()
            try:
                report = process_study(study.src, study.out_dir, spec, predict, cfg, transport)
            except StudyError as exc:
                summary.fail(study.src, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                continue
            except Exception as exc:
                stop = _run_level(exc, study)
                if stop is not None:
                    done = f"{len(summary.done)} of {len(studies)} studies done before"
                    raise type(stop)(f"{stop} ({done}; their outputs are complete)") from None
                summary.fail(study.src, defects.reason(exc, study.src))
                continue
            for warning in report["warnings"]:
                log.warning("%s: %s", shown(study.src.name), warning)
            t = report["timings_s"]
            volumes = ", ".join(f"{k.removesuffix('_volume_ml')} {v:.1f} mL" for k, v in report.items()
                                if k.endswith("_volume_ml"))
            timings = " ".join(f"{k} {v:.2f}s" for k, v in t.items())
            log.info("done %s: %s | %s", shown(study.src.name), volumes, timings)
            summary.done.append(study.src)
    log.info("%d studies processed, %d failed, %d files skipped", len(summary.done), len(summary.failed),
             len(summary.skipped))
    return summary
