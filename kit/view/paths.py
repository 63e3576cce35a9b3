"""Paths inside a folder only: what the server may serve.

One rule for every file it serves (results, logs, the page's own files, a study's CT): the file's real
path, symlinks followed, lies inside the real path of its folder. A link that leads out is refused, as the
operator refuses a study that is a link out of its input folder (odk.find_studies).
"""

from __future__ import annotations

from pathlib import Path


class Outside(Exception):
    """The path leaves the folder (``..``, absolute, a symlink out)."""


class Missing(Exception):
    """No such file in the folder."""


def real_file_inside(root: Path, path: Path) -> Path:
    """The real path of the existing file ``path`` (absolute), which must lie inside ``root``.

    Raises Outside when its real location (symlinks followed) is not inside ``root``; Missing when there is
    no such file (or a broken link, or a folder).
    """
    base = root.resolve()
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise Missing(str(path)) from exc
    if not target.is_relative_to(base):
        raise Outside(str(path))
    if not target.is_file():
        raise Missing(str(path))
    return target


def inside(root: Path, rel: str) -> Path:
    """The existing file ``root/rel``, its real path inside ``root``.

    Raises Outside for absolute paths, ``..`` / ``.`` / empty segments, backslashes or NUL, and for a path
    whose real location (symlinks followed) is not inside ``root``; Missing when there is no such file.
    """
    segments = rel.split("/")
    if (not rel or rel.startswith("/") or "\x00" in rel or "\\" in rel
            or any(s in ("", ".", "..") for s in segments)):
        raise Outside(rel)
    return real_file_inside(root, root.resolve().joinpath(*segments))
