"""Where the kit's own tree is: the checkout holding def/ (pipelines), local/ (models, sample study), .run/.

The kit is installed as a distribution (editable in `.venv`), so nothing needs the checkout on the import
path; only these files do. An editable install finds its checkout next to the package; an installed copy
(site-packages) uses $ODK_ROOT (scripts/lib.sh exports it), else the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_PARENT = Path(__file__).resolve().parent.parent


def _is_checkout(path: Path) -> bool:
    return (path / "pyproject.toml").is_file() and (path / "def").is_dir()


def kit_root() -> Path:
    """The kit's checkout (see the module's doc)."""
    if _is_checkout(_PACKAGE_PARENT):
        return _PACKAGE_PARENT
    return Path(os.environ.get("ODK_ROOT") or Path.cwd()).resolve()


ROOT = kit_root()


def run_dir(*parts: str) -> Path:
    """$ODK_RUN_DIR (default <root>/.run) joined with ``parts``: where targets keep their run state."""
    return Path(os.environ.get("ODK_RUN_DIR") or ROOT / ".run").joinpath(*parts)
