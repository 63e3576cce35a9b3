"""Schema and graph checks for Clara pipeline definitions; every problem as ``file:line: message``.

Usage: ``python -m kit.pipeline.validate [FILE_OR_DIR ...]`` (default: def/). Exit 1 on any error,
0 when there are only warnings (unknown keys, deprecated fields) or nothing at all.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kit.pipeline import rules
from kit.pipeline.graph import find_cycle
from kit.pipeline.problems import Problem
from kit.pipeline.schema import Entry, Op, OperatorChecker
from kit.pipeline.yamlnodes import Document, YamlError, YList, YMap, load_file, load_text


class _Checker(OperatorChecker):
    # -- top level --------------------------------------------------------------------------
    def check(self, root: Any) -> None:
        top = self.mapping(root, getattr(root, "line", 1), "a pipeline definition")
        if top is None:
            return
        self.known_keys(top, rules.TOP_KEYS, "the pipeline")
        if "api-version" not in top:
            self.error(top.line, "the pipeline has no 'api-version' (e.g. api-version: 0.4.0)")
        elif problem := rules.version_problem(top["api-version"]):
            self.error(top.line_of("api-version"), problem)
        else:
            self.version = rules.parse_version(top["api-version"])
        name = self.string(top, "name", "the pipeline")
        if name is not None and (problem := rules.name_problem(name, "pipeline name")):
            self.error(top.line_of("name"), problem)
        if "orchestrator" in top and str(top["orchestrator"]).lower() not in rules.ORCHESTRATORS:
            self.error(top.line_of("orchestrator"), f"orchestrator {top['orchestrator']!r} is not one of "
                                                    f"{', '.join(rules.ORCHESTRATORS)}")
        if "pull-secrets" in top and (secrets := self.sequence(top["pull-secrets"],
                                                               top.line_of("pull-secrets"), "pull-secrets")):
            for i, secret in enumerate(secrets):
                if not isinstance(secret, str) or not secret:
                    self.error(secrets.line_of(i),
                               f"a pull-secret is a secret's name, not {rules.type_name(secret)}")
        params = self.parameters(top)
        if "operators" not in top:
            self.error(top.line, "the pipeline has no 'operators'")
            return
        ops_node = self.sequence(top["operators"], top.line_of("operators"), "operators")
        if ops_node is None:
            return
        if not ops_node:
            self.error(top.line_of("operators"), "the pipeline has no operators")
        ops = [op for i, node in enumerate(ops_node)
               if (op := self.operator(node, ops_node.line_of(i), i)) is not None]
        self.graph(ops)
        self.placeholders(top, params)

    def parameters(self, top: YMap) -> dict[str, int]:
        if "parameters" not in top:
            return {}
        params = self.mapping(top["parameters"], top.line_of("parameters"), "parameters")
        if params is None:
            return {}
        for key, value in params.items():
            if not isinstance(key, str) or not key:
                self.error(params.key_line(key),
                           f"a parameter name must be a string, not {rules.type_name(key)}")
            elif not rules.is_scalar(value):
                self.error(params.line_of(key), f"parameter '{key}' must have a plain default value, "
                                                f"not {rules.type_name(value)}")
        return {str(k): params.key_line(k) for k in params}

    def placeholders(self, top: YMap, params: dict[str, int]) -> None:
        used: set[str] = set()
        for line, text in _strings(top, top.line):
            for ref in rules.placeholders(text):
                used.add(ref)
                if ref not in params:
                    self.error(line, f"placeholder ${{{{{ref}}}}} names no parameter (declare it under "
                                     f"'parameters' with a default)")
        for name, line in params.items():
            if name not in used:
                self.warn(line, f"parameter '{name}' is never used as ${{{{{name}}}}}")

    # -- graph ------------------------------------------------------------------------------
    def graph(self, ops: list[Op]) -> None:
        by_name: dict[str, Op] = {}
        for op in ops:
            key = op.name.lower()
            if key in by_name:
                self.error(op.line, f"operator name '{op.name}' is already used on line {by_name[key].line} "
                                    f"(names are compared case-insensitively)")
            else:
                by_name[key] = op
        upstream: dict[str, list[str]] = {op.name: [] for op in by_name.values()}
        for op in by_name.values():
            for entry in op.inputs:
                if entry.source is not None:
                    self.edge(op, entry, by_name, upstream)
        if cycle := find_cycle(list(upstream), upstream):
            line = next(e.source_line for e in by_name[cycle[0].lower()].inputs
                        if e.source and e.source.lower() == cycle[1].lower())
            self.error(line, "the operators form a cycle: " + " reads from ".join(f"'{n}'" for n in cycle))

    def edge(self, op: Op, entry: Entry, by_name: dict[str, Op], upstream: dict[str, list[str]]) -> None:
        source = by_name.get(entry.source.lower())
        where = f"operator '{op.name}'"
        if source is None:
            self.error(entry.source_line, f"{where} reads from '{entry.source}', which is not an operator of "
                                          f"this pipeline")
            return
        if source.name != entry.source:
            self.warn(entry.source_line, f"'from: {entry.source}' matches operator '{source.name}' only "
                                         f"case-insensitively")
        upstream[op.name].append(source.name)
        if not source.outputs:
            self.error(entry.source_line, f"{where} reads from '{source.name}', which has no output")
            return
        if entry.name is None:
            if len(source.outputs) > 1:
                names = ", ".join(o.name or "?" for o in source.outputs)
                self.error(entry.line, f"{where} reads from '{source.name}', which has {len(source.outputs)} "
                                       f"outputs ({names}): add 'name' to say which")
            matched = source.outputs[0] if len(source.outputs) == 1 else None
        else:
            matched = next((o for o in source.outputs if o.name == entry.name), None)
            if matched is None:
                named = [o.name for o in source.outputs if o.name]
                self.error(entry.line, f"{where} reads output '{entry.name}' of '{source.name}', which has "
                                       + (f"only {', '.join(repr(n) for n in named)}" if named
                                          else "a single unnamed output (drop 'name' or name that output)"))
        if matched is not None and (matched.io_type or "stream") != (entry.io_type or "stream"):
            self.error(entry.line, f"{where} reads the output of '{source.name}' as "
                                   f"{entry.io_type or 'stream'} but it is {matched.io_type or 'stream'} "
                                   f"(line {matched.line})")



def _strings(value: Any, line: int) -> Iterable[tuple[int, str]]:
    if isinstance(value, YMap):
        for k, v in value.items():
            yield from _strings(v, value.line_of(k))
    elif isinstance(value, YList):
        for i, v in enumerate(value):
            yield from _strings(v, value.line_of(i))
    elif isinstance(value, str):
        yield line, value


def validate_file(path: Path) -> list[Problem]:
    """Every problem of one pipeline file, in file order (errors and warnings)."""
    try:
        doc = load_file(path)
    except YamlError as exc:
        return [Problem(path, exc.line, "error", exc.message)]
    return _check(doc)


def validate_text(path: Path, text: str) -> list[Problem]:
    """Like :func:`validate_file` for text that is not in a file."""
    try:
        doc = load_text(text, path)
    except YamlError as exc:
        return [Problem(path, exc.line, "error", exc.message)]
    return _check(doc)


def _check(doc: Document) -> list[Problem]:
    path = doc.path
    checker = _Checker(path)
    for line, message in doc.duplicate_keys:
        checker.error(line, message)
    checker.check(doc.root)
    return sorted(checker.problems, key=lambda p: (p.line, p.severity))


def pipeline_files(targets: Iterable[Path]) -> list[Path]:
    """Files named directly, plus every *.yml / *.yaml under the directories named."""
    files: list[Path] = []
    for target in targets:
        if target.is_dir():
            files += sorted(p for p in target.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
        else:
            files.append(target)
    return files


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    files = pipeline_files(Path(a) for a in (args or ["def"]))
    if not files:
        print(f"error: no pipeline files (*.yml, *.yaml) in {' '.join(args or ['def'])}", file=sys.stderr)
        return 1
    errors = warnings = 0
    for path in files:
        if not path.is_file():
            print(f"{path}:0: error: no such file", file=sys.stderr)
            errors += 1
            continue
        problems = validate_file(path)
        for problem in problems:
            print(problem)
        errors += sum(p.severity == "error" for p in problems)
        warnings += sum(p.severity == "warning" for p in problems)
        if not any(p.severity == "error" for p in problems):
            print(f"{path}: ok" + (f" ({sum(p.severity == 'warning' for p in problems)} warnings)"
                                   if any(problems) else ""))
    print(f"{len(files)} file(s): {errors} error(s), {warnings} warning(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
