"""Structure checks of one operator (container, variables, requests, input/output, services, models)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kit.pipeline import rules
from kit.pipeline.problems import Reporter
from kit.pipeline.yamlnodes import YList, YMap


@dataclass
class Entry:
    line: int
    name: str | None = None
    source: str | None = None  # input: the `from` operator
    source_line: int = 0
    io_type: str | None = None


@dataclass
class Op:
    name: str
    line: int
    inputs: list[Entry] = field(default_factory=list)
    outputs: list[Entry] = field(default_factory=list)


class OperatorChecker(Reporter):
    # -- operators --------------------------------------------------------------------------
    def operator(self, node: Any, line: int, index: int) -> Op | None:
        m = self.mapping(node, line, f"operator #{index + 1}")
        if m is None:
            return None
        name = self.string(m, "name", f"operator #{index + 1}")
        if name is not None and (problem := rules.name_problem(name, "operator name")):
            self.error(m.line_of("name"), problem)
        where = f"operator '{name}'" if name else f"operator #{index + 1}"
        self.known_keys(m, rules.OPERATOR_KEYS, where)
        if "description" in m and not isinstance(m["description"], str):
            self.error(m.line_of("description"), f"description of {where} must be text")
        if "container" not in m:
            self.error(m.line, f"{where} has no 'container'")
        else:
            self.container(m["container"], m.line_of("container"), where)
        self.variables(m, where)
        self.requests(m, where)
        op = Op(name=name or f"#{index + 1}", line=m.line)
        op.inputs = self.entries(m, "input", where, rules.INPUT_KEYS)
        op.outputs = self.entries(m, "output", where, rules.OUTPUT_KEYS)
        self.output_names(op, m, where)
        if "services" in m:
            self.services(m, where)
        if "models" in m:
            self.since(rules.MODELS_SINCE, m.key_line("models"), f"'models' of {where}")
            if models := self.sequence(m["models"], m.line_of("models"), f"models of {where}"):
                for i, model in enumerate(models):
                    if mm := self.mapping(model, models.line_of(i), f"a model of {where}"):
                        self.known_keys(mm, rules.MODEL_KEYS, f"a model of {where}")
                        self.string(mm, "name", f"a model of {where}")
        return op

    def container(self, value: Any, line: int, where: str) -> None:
        c = self.mapping(value, line, f"container of {where}")
        if c is None:
            return
        self.known_keys(c, rules.CONTAINER_KEYS, f"the container of {where}")
        self.string(c, "image", f"the container of {where}")
        if "tag" in c:
            tag = c["tag"]
            if isinstance(tag, int | float) and not isinstance(tag, bool):
                self.warn(c.line_of("tag"), f"tag {tag!r} of {where} is read by YAML as a number; quote it")
            elif not isinstance(tag, str) or not tag:
                self.error(c.line_of("tag"), f"tag of {where} must be a string, not {rules.type_name(tag)}")
        if "command" in c:
            cmd = c["command"]
            if not isinstance(cmd, YList):
                self.error(c.line_of("command"), f"command of {where} must be a list like "
                                                 f"[\"python\", \"-m\", \"app\"], not {rules.type_name(cmd)}")
            else:
                for i, arg in enumerate(cmd):
                    if not rules.is_scalar(arg) or arg is None:
                        self.error(cmd.line_of(i), f"command argument of {where} must be a plain value, "
                                                   f"not {rules.type_name(arg)}")

    def variables(self, m: YMap, where: str) -> None:
        if "variables" not in m:
            return
        v = self.mapping(m["variables"], m.line_of("variables"), f"variables of {where}")
        for key, value in (v or {}).items():
            if not isinstance(key, str) or not rules.ENV_RE.match(key):
                self.error(v.key_line(key),
                           f"variable {key!r} of {where} is not an environment variable name")
            elif not rules.is_scalar(value) or value is None:
                self.error(v.line_of(key), f"variable '{key}' of {where} must have a plain value, "
                                           f"not {rules.type_name(value)}")

    def requests(self, m: YMap, where: str) -> None:
        if "requests" not in m:
            return
        r = self.mapping(m["requests"], m.line_of("requests"), f"requests of {where}")
        if r is None:
            return
        self.known_keys(r, rules.REQUEST_KEYS, f"the requests of {where}")
        for key in rules.REQUEST_KEYS:
            value = r.get(key)
            if key in r and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                self.error(r.line_of(key), f"requests.{key} of {where} must be a number >= 0"
                                           f"{' (memory in MB)' if key == 'memory' else ''}, not "
                                           f"{rules.type_name(value)}")

    def entries(self, m: YMap, key: str, where: str, allowed: tuple[str, ...]) -> list[Entry]:
        if key not in m:
            return []
        seq = self.sequence(m[key], m.line_of(key), f"{key} of {where}")
        found: list[Entry] = []
        paths: dict[str, int] = {}
        for i, node in enumerate(seq or []):
            e = self.mapping(node, seq.line_of(i), f"an {key} entry of {where}")
            if e is None:
                continue
            self.known_keys(e, allowed, f"an {key} entry of {where}")
            entry = Entry(line=e.line)
            if "type" in e:
                self.since(rules.TYPED_IO_SINCE, e.key_line("type"), f"typed {key} ('type') of {where}")
                if e["type"] not in rules.IO_TYPES:
                    self.error(e.line_of("type"), f"type {e['type']!r} of {where} is not one of "
                                                  f"{', '.join(rules.IO_TYPES)}")
                else:
                    entry.io_type = e["type"]
            for extra in ("element-type", "shape"):
                if extra in e and "type" not in e:
                    self.error(e.key_line(extra), f"'{extra}' in {where} needs a 'type'")
            if "shape" in e and not (isinstance(e["shape"], list) and all(
                    isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in e["shape"])):
                self.error(e.line_of("shape"), f"shape of {where} must be a list of integers (-1 = any)")
            if entry.io_type == "array":
                if "path" in e:
                    self.error(e.line_of("path"), f"an array {key} of {where} has no path (arrays are passed "
                                                  f"in memory)")
            elif "path" not in e and entry.io_type in (None, "stream"):
                self.error(e.line, f"an {key} entry of {where} has no 'path'")
            elif "path" in e:
                if problem := rules.path_problem(e["path"], f"{key} path of {where}"):
                    self.error(e.line_of("path"), problem)
                elif (p := e["path"].rstrip("/") or "/") in paths:
                    self.error(e.line_of("path"),
                               f"{key} path '{p}' of {where} is already used on line {paths[p]}")
                else:
                    paths[p] = e.line_of("path")
            if "name" in e:
                if problem := rules.name_problem(e["name"], f"{key} name"):
                    self.error(e.line_of("name"), f"{problem} (in {where})")
                else:
                    entry.name = e["name"]
            if "from" in e:
                if problem := rules.name_problem(e["from"], "'from'"):
                    self.error(e.line_of("from"), f"{problem} (in {where})")
                else:
                    entry.source, entry.source_line = e["from"], e.line_of("from")
            elif key == "input" and "name" in e:
                self.warn(e.key_line("name"), f"input name '{e['name']}' of {where} has no 'from': it reads "
                                              f"the pipeline's payload and the name is ignored")
            found.append(entry)
        return found

    def output_names(self, op: Op, m: YMap, where: str) -> None:
        if len(op.outputs) > 1:
            seen: dict[str, int] = {}
            for out in op.outputs:
                if out.name is None:
                    self.error(out.line, f"{where} has {len(op.outputs)} outputs: each needs a 'name' "
                                         f"(only a single output may be unnamed)")
                elif out.name.lower() in seen:
                    self.error(out.line, f"output name '{out.name}' of {where} is already used on line "
                                         f"{seen[out.name.lower()]}")
                else:
                    seen[out.name.lower()] = out.line
        if isinstance(m.get("input"), YList) and isinstance(m.get("output"), YList):
            in_paths = {e.get("path"): e.line for e in m["input"] if isinstance(e, YMap)}
            for e in m["output"]:
                if isinstance(e, YMap) and e.get("path") in in_paths and isinstance(e.get("path"), str):
                    self.error(e.line_of("path"), f"output path '{e['path']}' of {where} is also an input "
                                                  f"path (line {in_paths[e['path']]})")

    def services(self, m: YMap, where: str) -> None:
        line = m.key_line("services")
        if self.version is not None and self.version >= rules.SERVICES_DEPRECATED_SINCE:
            self.warn(line, f"'services' of {where} are deprecated since api-version 0.7.1; use 'models' "
                            f"with the platform's shared Triton")
        seq = self.sequence(m["services"], m.line_of("services"), f"services of {where}")
        for i, node in enumerate(seq or []):
            s = self.mapping(node, seq.line_of(i), f"a service of {where}")
            if s is None:
                continue
            swhere = f"service '{s.get('name', i + 1)}' of {where}"
            self.known_keys(s, rules.SERVICE_KEYS, swhere)
            name = self.string(s, "name", swhere)
            if name and (problem := rules.name_problem(name, "service name")):
                self.error(s.line_of("name"), problem)
            if "container" not in s:
                self.error(s.line, f"{swhere} has no 'container'")
            else:
                self.container(s["container"], s.line_of("container"), swhere)
            self.variables(s, swhere)
            self.requests(s, swhere)
            if "connections" in s:
                self.connections(s["connections"], s.line_of("connections"), swhere)

    def connections(self, value: Any, line: int, where: str) -> None:
        c = self.mapping(value, line, f"connections of {where}")
        if c is None:
            return
        self.known_keys(c, rules.CONNECTION_KEYS, f"the connections of {where}")
        for kind, keys in (("http", rules.HTTP_KEYS), ("volume", rules.VOLUME_KEYS)):
            if kind not in c:
                continue
            seq = self.sequence(c[kind], c.line_of(kind), f"{kind} connections of {where}")
            for i, node in enumerate(seq or []):
                e = self.mapping(node, seq.line_of(i), f"a {kind} connection of {where}")
                if e is None:
                    continue
                self.known_keys(e, keys, f"a {kind} connection of {where}")
                env = self.string(e, "name", f"a {kind} connection of {where}")
                if env is not None and not rules.ENV_RE.match(env):
                    self.error(e.line_of("name"), f"connection name '{env}' of {where} is not a valid "
                                                  f"environment variable name (it receives the address)")
                if kind == "http":
                    port = e.get("port")
                    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                        self.error(e.line_of("port"), f"port of {where} must be an integer 1-65535, not "
                                                      f"{rules.type_name(port)}")
                elif problem := rules.path_problem(e.get("path"), f"volume path of {where}"):
                    self.error(e.line_of("path"), problem)

