"""Which command lines a warm start can run: ``python [-u] -m MODULE ARGS`` or ``python [-u] SCRIPT ARGS``
with the interpreter the fork server runs (anything else starts cold, as before)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

# The interpreter flags a warm child reproduces (-u: unbuffered stdout/stderr; the child's streams always are).
ACCEPTED_FLAGS = frozenset({"-u"})
# Variables Python reads when it starts, not later: a warm child cannot honour a different value.
STARTUP_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "PYTHONNOUSERSITE", "PYTHONOPTIMIZE",
                     "PYTHONDONTWRITEBYTECODE", "PYTHONWARNINGS", "PYTHONDEVMODE", "PYTHONMALLOC",
                     "PYTHONHASHSEED", "PYTHONUTF8", "PYTHONIOENCODING")


@dataclass(frozen=True)
class WarmCommand:
    module: str  # "" for a script
    script: str  # "" for a module
    args: tuple[str, ...]
    argv: tuple[str, ...]  # the original command line (the child's process title)

    def as_dict(self) -> dict:
        return {"module": self.module, "script": self.script, "args": list(self.args), "argv": list(self.argv)}


def same_python(program: str, python: str) -> bool:
    """True when ``program`` is the interpreter ``python`` (the fork server's), as a path or a link to it."""
    try:
        return os.path.samefile(program, python) or os.path.abspath(program) == os.path.abspath(python)
    except OSError:
        return False


def parse(argv: Sequence[str], python: str, env: dict[str, str], server_env: dict[str, str]) -> WarmCommand | None:
    """The warm form of ``argv``, or None when it must start cold (another program or interpreter, other
    interpreter flags, or start-up variables that differ from the server's)."""
    if len(argv) < 2 or not same_python(argv[0], python):
        return None
    if any(env.get(k) != server_env.get(k) for k in STARTUP_VARIABLES):
        return None
    i = 1
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-m":
        if argv[i] not in ACCEPTED_FLAGS:
            return None
        i += 1
    if i >= len(argv):
        return None
    if argv[i] == "-m":
        if i + 1 >= len(argv) or not argv[i + 1] or argv[i + 1].startswith("-"):
            return None
        return WarmCommand(module=argv[i + 1], script="", args=tuple(argv[i + 2:]), argv=tuple(argv))
    return WarmCommand(module="", script=argv[i], args=tuple(argv[i + 1:]), argv=tuple(argv))
