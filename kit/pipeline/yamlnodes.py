"""Safe YAML loading that remembers where every value came from (1-based line numbers).

``load_file`` composes the document with ``yaml.SafeLoader`` (no arbitrary objects), then builds
plain Python values: mappings become :class:`YMap` (a dict that also knows the line of each key and
each value), sequences become :class:`YList` (a list that knows the line of each item). Scalars are
constructed by the safe constructor, so ``0.4.0`` stays a string and ``8000`` is an int. Duplicate
keys, which ``yaml.safe_load`` silently collapses, are reported instead.

Anchors and aliases (``&name`` / ``*name``, merge keys included) are refused before anything is built: a
few hundred bytes of nested aliases expand to gigabytes ("billion laughs"). Files over ``MAX_BYTES`` and
nesting deeper than ``MAX_DEPTH`` are refused too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class YMap(dict):
    """A mapping with ``line`` (where it starts), ``key_lines`` and ``value_lines``."""

    line: int
    key_lines: dict[Any, int]
    value_lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        """Line of ``key``'s value when present, else the mapping's own line."""
        return self.value_lines.get(key, self.line)

    def key_line(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class YList(list):
    """A sequence with ``line`` (where it starts) and ``item_lines``."""

    line: int
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if 0 <= index < len(self.item_lines) else self.line


@dataclass
class Document:
    """One loaded YAML file: its root value plus problems found while loading."""

    path: Path
    root: Any
    duplicate_keys: list[tuple[int, str]] = field(default_factory=list)


class YamlError(Exception):
    """The file is not YAML at all; ``line`` is where the parser gave up (0 when unknown)."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


MAX_BYTES = 1 << 20  # a pipeline definition is a few kB
MAX_DEPTH = 64

_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Builder:
    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.duplicates: list[tuple[int, str]] = []

    def build(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_TAGS:
            raise yaml.constructor.ConstructorError(
                None, None, f"tag {node.tag!r} is not allowed in a pipeline definition", node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node)
        if isinstance(node, yaml.SequenceNode):
            seq = YList(self.build(item) for item in node.value)
            seq.line = _line(node)
            seq.item_lines = [_line(item) for item in node.value]
            return seq
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode) -> YMap:
        self.loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
        result = YMap()
        result.line = _line(node)
        result.key_lines = {}
        result.value_lines = {}
        for key_node, value_node in node.value:
            key = self.loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                key = str(key)
            if key in result:
                self.duplicates.append((_line(key_node), f"duplicate key '{key}' (first on line "
                                        f"{result.key_lines[key]}); YAML keeps only the last one"))
            result[key] = self.build(value_node)
            result.key_lines[key] = _line(key_node)
            result.value_lines[key] = _line(value_node)
        return result


def _check_events(text: str, path: Path) -> None:
    """Refuse anchors, aliases and deep nesting by scanning the parser's events (nothing is built)."""
    if len(text) > MAX_BYTES:
        raise YamlError(path, 0, f"{len(text)} characters: a pipeline definition is limited to {MAX_BYTES}")
    loader = yaml.SafeLoader(text)
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                raise YamlError(path, event.start_mark.line + 1, f"alias '*{event.anchor}': anchors and aliases "
                                "are not allowed in a pipeline definition; write the value out")
            if getattr(event, "anchor", None):
                raise YamlError(path, event.start_mark.line + 1, f"anchor '&{event.anchor}': anchors and "
                                "aliases are not allowed in a pipeline definition; write the value out")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise YamlError(path, event.start_mark.line + 1, f"nested deeper than {MAX_DEPTH} levels")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    finally:
        loader.dispose()


def load_text(text: str, path: Path) -> Document:
    """Load one YAML document from ``text``; ``path`` is only used in messages."""
    loader = yaml.SafeLoader(text)
    builder = _Builder(loader)
    try:
        _check_events(text, path)
        node = loader.get_single_node()
        root = builder.build(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise YamlError(path, line, f"not valid YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise YamlError(path, 0, f"not valid YAML: {exc}") from exc
    finally:
        loader.dispose()
    return Document(path=path, root=root, duplicate_keys=builder.duplicates)


def load_file(path: Path) -> Document:
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise YamlError(path, 0, f"{size} bytes: a pipeline definition is limited to {MAX_BYTES}")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlError(path, 0, f"cannot read: {exc}") from exc
    return load_text(text, path)
