"""Paths inside a folder only: what the server may serve."""

from __future__ import annotations

from pathlib import Path


class Outside(Exception):
    """The path leaves the folder (``..``, absolute, a symlink out)."""


class Missing(Exception):
    """No such file in the folder."""


def inside(root: Path, rel: str) -> Path:
    """The existing file ``root/rel``, its real path inside ``root``.

    Raises Outside for absolute paths, ``..`` / ``.`` / empty segments, backslashes or NUL, and for a path
    whose real location (symlinks followed) is not inside ``root``; Missing when there is no such file.
    """
    segments = rel.split("/")
    if (not rel or rel.startswith("/") or "\x00" in rel or "\\" in rel
            or any(s in ("", ".", "..") for s in segments)):
        raise Outside(rel)
    base = root.resolve()
    try:
        target = base.joinpath(*segments).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise Missing(rel) from exc
    if not target.is_relative_to(base):
        raise Outside(rel)
    if not target.is_file():
        raise Missing(rel)
    return target
