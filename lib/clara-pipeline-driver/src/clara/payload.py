"""The payload an operator works on: named input and output directories, parsed from the environment.

``NVIDIA_CLARA_INPUTPATHS`` and ``NVIDIA_CLARA_OUTPUTPATHS`` each hold ``name:path`` entries separated
by ``;``. Names are ``payload`` (the pipeline's input), ``op/output`` (an operator's output) or empty
(allowed once per side). Paths are absolute. Only the first ``:`` of an entry separates name and path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from . import env
from .errors import Error

ENTRY_FORM = "name:/absolute/path entries separated by ';' (e.g. payload:/input or op/output:/output)"
_NAME = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?")


@dataclass(frozen=True)
class PayloadEntry:
    """One named directory of the payload."""

    name: str
    path: Path


class PayloadEntries(Sequence[PayloadEntry]):
    """An ordered, read-only sequence of entries that can also be looked up by name."""

    def __init__(self, entries: Iterable[PayloadEntry] = ()) -> None:
        self._entries = tuple(entries)
        self._by_name: dict[str, PayloadEntry] = {}
        for entry in self._entries:
            if entry.name in self._by_name:
                raise Error(f"duplicate payload entry name {entry.name!r}")
            self._by_name[entry.name] = entry

    @overload
    def __getitem__(self, key: int) -> PayloadEntry: ...
    @overload
    def __getitem__(self, key: str) -> PayloadEntry: ...
    @overload
    def __getitem__(self, key: slice) -> PayloadEntries: ...

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        if isinstance(key, str):
            return self.by_name(key)
        if isinstance(key, slice):
            return PayloadEntries(self._entries[key])
        return self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[PayloadEntry]:
        return iter(self._entries)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return item in self._by_name
        return item in self._entries

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PayloadEntries):
            return self._entries == other._entries
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._entries)

    def __repr__(self) -> str:
        return f"PayloadEntries({list(self._entries)!r})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def by_name(self, name: str) -> PayloadEntry:
        """The entry called ``name``; KeyError naming the entries there are otherwise."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no payload entry named {name!r}; entries: {list(self._by_name)}") from None

    def get(self, name: str, default: PayloadEntry | None = None) -> PayloadEntry | None:
        return self._by_name.get(name, default)


@dataclass(frozen=True)
class Payload:
    """The operator's inputs and outputs."""

    input_entries: PayloadEntries
    output_entries: PayloadEntries

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Payload:
        """Parse both variables (syntax only; see :func:`check_payload` for the filesystem rules)."""
        environ = os.environ if environ is None else environ
        return cls(
            input_entries=parse_entries(environ.get(env.INPUTPATHS, ""), env.INPUTPATHS),
            output_entries=parse_entries(environ.get(env.OUTPUTPATHS, ""), env.OUTPUTPATHS),
        )


def parse_entries(text: str, variable: str) -> PayloadEntries:
    """Parse ``name:path;name:path``. Surrounding whitespace and one empty trailing entry are ignored."""
    pieces = text.split(";")
    if pieces and not pieces[-1].strip():
        pieces.pop()
    entries: list[PayloadEntry] = []
    seen: set[str] = set()
    for raw in pieces:
        if not raw.strip():
            raise Error(f"{variable}: empty entry in {text!r} (only a trailing ';' may be empty); "
                        f"expected {ENTRY_FORM}")
        entry = _parse_entry(raw, variable)
        if entry.name in seen:
            what = "the empty name" if entry.name == "" else f"name {entry.name!r}"
            raise Error(f"{variable}: entry {raw.strip()!r} repeats {what}; expected {ENTRY_FORM}, "
                        "each name at most once")
        seen.add(entry.name)
        entries.append(entry)
    return PayloadEntries(entries)


def _parse_entry(raw: str, variable: str) -> PayloadEntry:
    entry = raw.strip()
    name, sep, path = entry.partition(":")
    name, path = name.strip(), path.strip()
    if not sep and entry.startswith("/"):
        raise Error(f"{variable}: entry {entry!r} has no name (e.g. payload:{entry}); expected {ENTRY_FORM}")
    if not sep or not path:
        raise Error(f"{variable}: entry {entry!r} has no path; expected {ENTRY_FORM}")
    if name and not _NAME.fullmatch(name):
        raise Error(f"{variable}: entry {entry!r} has a bad name {name!r} (letters, digits, '_', '.', '-', "
                    f"at most one '/'); expected {ENTRY_FORM}")
    if not path.startswith("/"):
        raise Error(f"{variable}: entry {entry!r} has a relative path {path!r}; expected {ENTRY_FORM}")
    return PayloadEntry(name=name, path=Path(path))


def check_payload(payload: Payload, create_outputs: bool) -> None:
    """Inputs must be existing directories; outputs must be directories (created when ``create_outputs``)."""
    for entry in payload.input_entries:
        shown = f"{env.INPUTPATHS}: entry {_show(entry)}"
        if not entry.path.exists():
            raise Error(f"{shown}: input directory {entry.path} does not exist; create it or point the entry at"
                        " an existing folder")
        if not entry.path.is_dir():
            raise Error(f"{shown}: input {entry.path} is not a directory; point the entry at a folder")
    for entry in payload.output_entries:
        shown = f"{env.OUTPUTPATHS}: entry {_show(entry)}"
        if entry.path.exists() and not entry.path.is_dir():
            raise Error(f"{shown}: {entry.path} exists and is not a directory; remove it or point the entry at a"
                        " folder")
        if create_outputs:
            try:
                entry.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise Error(f"{shown}: cannot create {entry.path}: {exc.strerror or exc}") from None


def require_entries(payload: Payload) -> None:
    """An operator runs on at least one input and one output entry; Error naming the empty variable."""
    for entries, variable, example in ((payload.input_entries, env.INPUTPATHS, "payload:/input"),
                                       (payload.output_entries, env.OUTPUTPATHS, "op/output:/output")):
        if not entries:
            raise Error(f"{variable} is empty or unset; an operator needs at least one entry, e.g. "
                        f"{variable}={example}")


def _show(entry: PayloadEntry) -> str:
    return repr(f"{entry.name}:{entry.path}")
