"""Outputs that appear atomically: written to a hidden temporary file beside the destination, then renamed.

Standard library only, so that a program that writes no NIfTI (register-results, the listener) does not pay
for importing nibabel.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

_UMASK = os.umask(0o022)
os.umask(_UMASK)


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
