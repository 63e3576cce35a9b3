"""Files: which inputs are studies, where their outputs go, and outputs that appear atomically.

- Input and output folders must not overlap (the same folder, or one inside the other): the operator
  would overwrite studies with its outputs, or take its outputs for studies on the next run.
- Every file matching the operator's pattern (NIfTI by default) found recursively under an input entry is a
  study, except hidden files and the operator's own outputs (``*_seg.nii[.gz]``).
- Folder links are not descended into; a symbolic link is followed only when it resolves inside its input
  entry, and only regular files are opened (a FIFO would block the operator): anything else is logged,
  never opened. A file reached twice is one study.
- A study in a sub-folder writes into the same sub-folder of the output; two studies that would write
  the same outputs are an error naming both.
- Every output is written in full to a hidden temporary file beside its final name and renamed into place;
  a study's files are committed together (:class:`StudyWriter`): all of them appear, or none.

Standard library only, so that an operator that writes no NIfTI (register-results) does not pay for nibabel.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from .errors import RunError, output_failure, shown

log = logging.getLogger("odk")
_UMASK = os.umask(0o022)
os.umask(_UMASK)
NIFTI_SUFFIXES = (".nii.gz", ".nii")


def is_nifti(path: Path) -> bool:
    """True for a ``.nii`` or ``.nii.gz`` file name."""
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def stem(path: Path) -> str:
    """File name without .nii / .nii.gz (``liver_14.nii.gz`` -> ``liver_14``)."""
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem




def atomic_write_bytes(dest: Path, data: bytes) -> None:
    """Write ``data`` to a hidden temp file beside ``dest``, then rename: no partial file is ever visible."""
    atomic_write_parts(dest, (data,))


def atomic_write_parts(dest: Path, parts: Sequence[bytes | memoryview]) -> None:
    """``atomic_write_bytes`` of the concatenated ``parts``, written one after the other (a big array's memory
    goes to the file as it is, without first being joined into one more copy)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(fd, "wb", buffering=0) as fh:
            for part in parts:
                view = memoryview(part).cast("B")
                while view:  # an unbuffered write may take less than all
                    view = view[fh.write(view):]
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise




def files_under(root: Path) -> Iterator[Path]:
    """Files under ``root`` (``root`` itself when it is not a folder) in sorted order per folder, without
    descending into linked folders."""
    if not root.is_dir():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames.sort()
        for name in list(dirnames):
            if (here / name).is_symlink():
                log.info("not following the folder link %s", shown(here / name))
        for name in sorted(filenames):
            yield here / name


def unsafe_reason(path: Path, root: Path) -> str | None:
    """Why ``path``, found under the input folder ``root``, must not be opened; None: it may be read."""
    if path.is_symlink():
        target = path.resolve()
        if not target.exists():
            return "a broken symbolic link"
        if not target.is_relative_to(root.resolve()):
            return "a symbolic link out of the input folder (not followed)"
    return _not_regular(path)


def _not_regular(path: Path) -> str | None:
    """What ``path`` (or what its link points to) is when it is not a regular file, else None; a path that
    cannot be examined is left to fail when it is read."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a folder"))
    kind = next((name for test, name in kinds if test(mode)), "a special file")
    return f"{kind}, not a regular file (never opened: reading it could block)"


PROBE_BYTES = 64 * 1024


def check_writable(out_root: Path) -> None:
    """Create the output folder and write (and remove) a small file in it; RunError when that fails."""
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".odk-write-check.", dir=out_root)
    except OSError as exc:
        raise (output_failure(exc, out_root) or RunError(f"cannot use the output folder {shown(out_root)}:"
                                                         f" {exc.strerror or exc}")) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(bytes(PROBE_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise (output_failure(exc, out_root) or RunError(f"cannot write to the output folder {shown(out_root)}:"
                                                         f" {exc.strerror or exc}")) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


class StudyWriter:
    """Stage files with :meth:`add`, then :meth:`commit` them all; leaving the ``with`` block without a
    commit (an exception, a signal) removes everything staged."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []  # (temporary, final)

    def __enter__(self) -> StudyWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.discard()

    def add(self, dest: Path, data: bytes) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        self._staged.append((Path(tmp), dest))
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)

    def commit(self) -> None:
        """Rename every staged file into place, in the order added; if one rename fails, the files
        already renamed are removed again (they are this study's new outputs)."""
        placed: list[Path] = []
        try:
            for tmp, dest in self._staged:
                os.replace(tmp, dest)
                placed.append(dest)
        except BaseException:
            for dest in placed:
                dest.unlink(missing_ok=True)
            raise
        self._staged.clear()

    def discard(self) -> None:
        while self._staged:
            tmp, _dest = self._staged.pop()
            tmp.unlink(missing_ok=True)


OUTPUT_SUFFIXES = ("_seg.nii.gz", "_seg.nii")


@dataclass(frozen=True)
class Study:
    """One input file and the folder its outputs go to.

    >>> study = Study(Path("in/ct.nii.gz"), Path("out"))
    >>> study.name, study.output("_seg.nii.gz")
    ('ct', PosixPath('out/ct_seg.nii.gz'))
    """

    src: Path
    out_dir: Path
    # Every input entry of the run, and the study's sub-folder within its own: where :meth:`companion` looks.
    inputs: tuple[Path, ...] = ()
    rel_dir: Path = Path()

    @property
    def name(self) -> str:
        """The input's file name without .nii / .nii.gz: every output is named after it."""
        return stem(self.src)

    def output(self, suffix: str) -> Path:
        """Where the output ``<name><suffix>`` of this study goes (e.g. ``_seg.nii.gz``, ``.json``)."""
        return self.out_dir / f"{self.name}{suffix}"

    def companion(self, suffix: str) -> Path | None:
        """The file ``<name><suffix>`` in the study's sub-folder of an input entry (the first that has one, in
        the order of the entries), e.g. the report an upstream operator wrote for this study when the pipeline
        gives its output as a second input; None when no entry has it. Never the study itself, never a link
        out of its entry or anything but a regular file.

        >>> report = study.companion(".json")          # PosixPath('/segmentation/ct.json') or None
        """
        own = self.src.resolve()
        for root in self.inputs:
            path = root / self.rel_dir / f"{self.name}{suffix}"
            if root.is_dir() and path.is_file() and path.resolve() != own and unsafe_reason(path, root) is None:
                return path
        return None


@dataclass
class RunSummary:
    """The studies of a run: done, failed (with the reason), skipped (not studies)."""

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
            studies.append(Study(path, out_dir, tuple(inputs), rel_dir))
    return studies
