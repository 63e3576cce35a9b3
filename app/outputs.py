"""The output folder: checked writable before any work, and a study's files committed together.

Each file of a study is first written in full to a hidden temporary file beside its final name; only
when all of them are written are they renamed into place (the report last, so a report always means a
complete study). A failure before that (disk full, a signal) removes the temporary files: nothing of
the study appears.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType

from .errors import RunError, output_failure, shown

_UMASK = os.umask(0o022)
os.umask(_UMASK)
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
