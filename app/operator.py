"""The operator's execute step: every NIfTI study under the input entries -> the output entry.

A study that fails is logged with its reason and the others still run; the run fails at the end if any
study failed (or if there was nothing to process).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .config import OperatorConfig
from .inference import TritonSession
from .niftiio import is_nifti, stem
from .study import process_study

log = logging.getLogger("app")


class OperatorError(RuntimeError):
    """The run as a whole cannot proceed (no inputs, unusable output folder, Triton unavailable...)."""


@dataclass(frozen=True)
class Study:
    src: Path
    out_dir: Path


@dataclass
class RunSummary:
    done: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and bool(self.done)

    def fail(self, path: Path, reason: str) -> None:
        """Record a study that cannot be processed, with the one log line that names it and why."""
        log.error("FAILED %s: %s", path, reason)
        self.failed.append((path, reason))


def find_studies(inputs: Sequence[Path], out_root: Path, summary: RunSummary) -> list[Study]:
    """NIfTI files found recursively under each input path, each with the output folder it maps to.

    A study in a sub-folder of an input entry writes into the same sub-folder of the output entry.
    """
    studies: list[Study] = []
    seen: dict[Path, Path] = {}
    for root in inputs:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if path.name.startswith("."):
                continue
            if not is_nifti(path):
                log.info("skipping %s: not a NIfTI file (.nii / .nii.gz)", path)
                summary.skipped.append(path)
                continue
            rel_dir = Path() if root.is_file() else path.parent.relative_to(root)
            out_dir = out_root / rel_dir
            if not out_dir.resolve().is_relative_to(out_root.resolve()):
                summary.fail(path, "its output folder would be outside the output entry")
                continue
            key = (out_dir / stem(path)).resolve()
            if key in seen:
                summary.fail(path, f"same output name as {seen[key]} (both are '{stem(path)}')")
                continue
            seen[key] = path
            studies.append(Study(path, out_dir))
    return studies


def run(inputs: Sequence[Path], output: Path, cfg: OperatorConfig) -> RunSummary:
    """Process every study; never raises for a single bad study."""
    summary = RunSummary()
    studies = find_studies(inputs, output, summary)
    if not studies and not summary.failed:
        names = ", ".join(str(p) for p in inputs)
        raise OperatorError(f"no NIfTI studies (.nii / .nii.gz) found under {names}; put studies there or"
                            " fix INPUT_DIR / NVIDIA_CLARA_INPUTPATHS")
    with TritonSession.open(cfg) as session:
        spec, transport = session.spec, session.transport
        assert spec is not None
        log.info("model %s v%s: window %s at %s mm, HU window %s, batch %d, transport %s", spec.name,
                 spec.version, "x".join(map(str, spec.roi)), ",".join(f"{s:g}" for s in spec.spacing_mm),
                 ",".join(f"{w:g}" for w in spec.hu_window), session.batch_capacity(), transport)
        predict = session.predictor()
        for study in studies:
            try:
                report = process_study(study.src, study.out_dir, spec, predict, cfg, transport)
            except Exception as exc:  # isolate the failure to this study; the reason goes to the log
                log.debug("details", exc_info=True)
                summary.fail(study.src, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                continue
            t = report["timings_s"]
            volumes = ", ".join(f"{k.removesuffix('_volume_ml')} {v:.1f} mL" for k, v in report.items()
                                if k.endswith("_volume_ml"))
            log.info("done %s: %s | %s", study.src.name, volumes, " ".join(f"{k} {v:.2f}s" for k, v in t.items()))
            summary.done.append(study.src)
    log.info("%d studies processed, %d failed, %d files skipped", len(summary.done), len(summary.failed),
             len(summary.skipped))
    return summary
