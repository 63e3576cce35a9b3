"""The two kinds of failure the operator knows, and how an exception is sorted into one of them.

A *study* failure (StudyError: unreadable, wrong shape, non-finite voxels, too large...) fails that study
and the run goes on. A *run* failure (RunError: Triton gone, model unloaded, out of memory, disk full,
output not writable) stops the run at once with one line; nothing else would succeed either.
"""

from __future__ import annotations

import errno


class StudyError(ValueError):
    """This input cannot be processed; the message says why (the operator logs it and carries on)."""


class RunError(RuntimeError):
    """The run as a whole cannot go on; the message says what happened and what to do."""


class TritonUnavailable(RunError):
    """Triton or the model did not become ready in time, or stopped answering."""


class Interrupted(BaseException):
    """The operator received SIGTERM (SIGINT arrives as KeyboardInterrupt)."""

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(name)
        self.signum = signum
        self.name = name


# errno -> what it means for the output folder and what to do about it
_OUTPUT_ERRNOS = {
    errno.ENOSPC: "no space left on the device; free space (or choose another OUTPUT_DIR) and run again",
    errno.EDQUOT: "disk quota exceeded; free space (or choose another OUTPUT_DIR) and run again",
    errno.EROFS: "the file system is read-only; choose a writable OUTPUT_DIR",
    errno.EACCES: "permission denied; make it writable or choose another OUTPUT_DIR",
    errno.EPERM: "operation not permitted; make it writable or choose another OUTPUT_DIR",
    errno.EIO: "input/output error on the device; check the disk",
}


def output_failure(exc: OSError, where: object) -> RunError | None:
    """A RunError for an OSError that makes the output folder unusable for every study; else None."""
    advice = _OUTPUT_ERRNOS.get(exc.errno or 0)
    if advice is None:
        return None
    return RunError(f"cannot write to the output folder {shown(where)}: {advice}")


def shown(value: object) -> str:
    """A path or name for a log line: as is when printable, else its repr (a newline cannot split a line)."""
    text = str(value)
    return text if text.isprintable() else repr(text)
