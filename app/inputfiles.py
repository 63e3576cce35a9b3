"""The files under an input entry that may be opened: one rule for every operator that walks its inputs.

- Folder links are not descended into (logged).
- A symbolic link is followed only when it resolves inside the input entry; a link out of it, or a broken
  one, is skipped with its reason.
- Only regular files are read: a FIFO, socket or device (or a link to one) is skipped; opening a FIFO would
  block the operator until something writes to it.

Standard library only: register-results and the DICOM reader use it without importing nibabel.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from .errors import shown

log = logging.getLogger("app")


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
