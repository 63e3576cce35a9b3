"""Problems found in a pipeline file, and the small reporting helpers the checks share."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kit.pipeline import rules
from kit.pipeline.yamlnodes import YList, YMap


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    severity: str  # "error" | "warning"
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.severity}: {self.message}"


class Reporter:
    """Collects problems of one file; ``version`` is its api-version once known."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[Problem] = []
        self.version: tuple[int, int, int] | None = None

    def error(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.path, line, "error", message))

    def warn(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.path, line, "warning", message))

    # -- helpers ----------------------------------------------------------------------------
    def mapping(self, value: Any, line: int, what: str) -> YMap | None:
        if isinstance(value, YMap):
            return value
        self.error(line, f"{what} must be a mapping, not {rules.type_name(value)}")
        return None

    def sequence(self, value: Any, line: int, what: str) -> YList | None:
        if isinstance(value, YList):
            return value
        self.error(line, f"{what} must be a list, not {rules.type_name(value)}")
        return None

    def known_keys(self, m: YMap, allowed: Iterable[str], where: str) -> None:
        allowed = tuple(allowed)
        for key in m:
            if key not in allowed:
                self.warn(m.key_line(key),
                          f"unknown key '{key}' in {where} (ignored; known: {', '.join(allowed)})")

    def string(self, m: YMap, key: str, where: str, required: bool = True) -> str | None:
        if key not in m:
            if required:
                self.error(m.line, f"{where} has no '{key}'")
            return None
        value = m[key]
        if not isinstance(value, str) or not value.strip():
            self.error(m.line_of(key),
                       f"'{key}' of {where} must be a non-empty string, not {rules.type_name(value)}")
            return None
        return value

    def since(self, version: tuple[int, int, int], line: int, what: str) -> None:
        if self.version is not None and self.version < version:
            need = ".".join(map(str, version))
            self.error(line, f"{what} needs api-version {need} or later (this file says "
                             f"{'.'.join(map(str, self.version))})")

