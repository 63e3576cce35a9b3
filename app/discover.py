"""Which files are studies, and where their outputs go.

- Input and output folders must not overlap (the same folder, or one inside the other): the operator
  would overwrite studies with its outputs, or take its outputs for studies on the next run.
- Every NIfTI file found recursively under an input entry is a study, except hidden files and the
  operator's own label maps (``*_seg.nii[.gz]``).
- Symbolic links are not followed out of their input entry, and only regular files are opened
  (app/inputfiles.py: logged, never opened); a file reached twice (the same folder under several input
  names, or a link inside the entry) is one study.
- A study in a sub-folder writes into the same sub-folder of the output; two studies that would write
  the same outputs are an error naming both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RunError, shown
from .inputfiles import files_under, unsafe_reason
from .niftiio import is_nifti, stem

log = logging.getLogger("app")
OUTPUT_SUFFIXES = ("_seg.nii.gz", "_seg.nii")


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
        log.error("FAILED %s: %s", shown(path), reason)
        self.failed.append((path, reason))

    def skip(self, path: Path, why: str) -> None:
        log.info("skipping %s: %s", shown(path), why)
        self.skipped.append(path)


def check_no_overlap(inputs: Sequence[Path], out_root: Path) -> None:
    """RunError when the output folder is an input folder, lies inside one, or contains one."""
    out = out_root.resolve()
    for root in inputs:
        src = root.resolve()
        where = f"input {shown(root)} and output {shown(out_root)}"
        if src == out:
            raise RunError(f"{where} are the same folder: outputs would overwrite or mix with the studies;"
                           " choose a separate OUTPUT_DIR")
        if src.is_dir() and out.is_relative_to(src):
            raise RunError(f"{where}: the output folder lies inside the input folder, so a later run would take"
                           " the outputs for studies; choose an OUTPUT_DIR outside the input")
        if src.is_relative_to(out):
            raise RunError(f"{where}: the input lies inside the output folder, where outputs are written;"
                           " choose an OUTPUT_DIR that does not contain the input")


def _refusal(path: Path, root: Path) -> str | None:
    """Why ``path`` is not a study (None: it is one)."""
    if not is_nifti(path):
        return "not a NIfTI file (.nii / .nii.gz)"
    if path.name.endswith(OUTPUT_SUFFIXES):
        return "an operator label map (*_seg.nii.gz), not a CT study"
    return unsafe_reason(path, root)


def find_studies(inputs: Sequence[Path], out_root: Path, summary: RunSummary) -> list[Study]:
    """NIfTI studies under each input path, each with the output folder it maps to."""
    studies: list[Study] = []
    by_output: dict[Path, Path] = {}
    by_file: dict[Path, Path] = {}
    for root in inputs:
        # Real files before links, so that a link to a study inside the input is the duplicate.
        for path in sorted(files_under(root), key=lambda p: p.is_symlink()):
            if path.name.startswith("."):
                continue
            why = _refusal(path, root if root.is_dir() else root.parent)
            if why is not None:
                summary.skip(path, why)
                continue
            real = path.resolve()
            if real in by_file:
                log.info("%s is the same file as %s: processed once", shown(path), shown(by_file[real]))
                continue
            by_file[real] = path
            rel_dir = path.parent.relative_to(root) if root.is_dir() else Path()
            out_dir = out_root / rel_dir
            key = (out_dir / stem(path)).resolve()
            if key in by_output:
                summary.fail(path, f"same output name as {shown(by_output[key])} (both are '{shown(stem(path))}');"
                                   " rename one or put them in different sub-folders")
                continue
            by_output[key] = path
            studies.append(Study(path, out_dir))
    return studies
