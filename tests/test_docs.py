"""The documentation agrees with the code: env.list, the operator's defaults (odk/config.py) and
docs/configuration.md name the same variables with the same defaults; every `make X` the documentation
mentions is a target of the Makefile; every page in docs/ is linked from the README, which stays short."""

from __future__ import annotations

import re
from pathlib import Path

from odk.config import from_env, log_level

ROOT = Path(__file__).resolve().parents[1]
CONFIG_PAGE = ROOT / "docs" / "configuration.md"
DRIVER_PAGE = ROOT / "lib" / "clara-pipeline-driver" / "README.md"
ENV_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]+)=(\S*)")


def _env_list() -> dict[str, str | None]:
    """Every variable in env.list: its value when set, None when only a commented example."""
    found: dict[str, str | None] = {}
    for line in (ROOT / "env.list").read_text().splitlines():
        m = ENV_LINE.match(line)
        if m:
            found[m.group(2)] = None if m.group(1) else m.group(3)
    return found


def _operator_variables() -> set[str]:
    text = (ROOT / "app" / "config.py").read_text()
    return set(re.findall(r'"((?:TRITON|ODK|NVIDIA)_[A-Z0-9_]+)"', text))


def _documented_defaults() -> dict[str, str | None]:
    """docs/configuration.md's table: variable -> its default when a literal (`value`), else None."""
    rows: dict[str, str | None] = {}
    for line in CONFIG_PAGE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| `") or len(cells) < 3:
            continue
        literal = re.fullmatch(r"`([^`]*)`", cells[1])
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
            rows[name] = literal.group(1) if literal else None
    return rows


def test_every_operator_variable_is_in_env_list_and_documented() -> None:
    env, page = _env_list(), CONFIG_PAGE.read_text()
    variables = _operator_variables()
    assert len(variables) > 10
    assert sorted(variables - set(env)) == [], "read by odk/config.py but missing from env.list"
    assert sorted(v for v in variables if f"`{v}`" not in page) == [], "missing from docs/configuration.md"


def test_every_env_list_variable_is_documented() -> None:
    pages = CONFIG_PAGE.read_text() + DRIVER_PAGE.read_text()
    assert sorted(v for v in _env_list() if f"`{v}`" not in pages) == []


def test_env_list_values_are_the_operators_defaults() -> None:
    """Applying env.list as it is changes nothing: its values are exactly the defaults of odk/config.py."""
    operator = _operator_variables()
    applied = {k: v for k, v in _env_list().items() if k in operator and v is not None}
    assert applied, "env.list sets no operator variable"
    assert from_env(applied) == from_env({})
    assert log_level(applied) == log_level({})


def test_documented_defaults_are_the_operators_and_env_lists() -> None:
    documented, env = _documented_defaults(), _env_list()
    operator = _operator_variables()
    assert sorted(operator - set(documented) - {"NVIDIA_CLARA_TRTISURI", "TRITON_URL"}) == [], \
        "a variable of odk/config.py has no row in docs/configuration.md"
    for name, default in documented.items():
        if name not in operator or default is None:
            continue
        assert from_env({name: default}) == from_env({}), f"{name}: documented default {default!r} is not the default"
        assert log_level({name: default}) == log_level({})
        if env.get(name) is not None:
            assert env[name] == default, f"{name}: env.list says {env[name]!r}, docs/configuration.md {default!r}"


def _doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), DRIVER_PAGE,
            *sorted((ROOT / "local" / "models").glob("*/README.md"))]


def _makefile_targets() -> set[str]:
    targets: set[str] = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.%/$() -]+?)\s*:(?![:=?])", line)
        if m and not line.startswith(("\t", "#")):
            targets.update(t for t in m.group(1).split() if not t.startswith(("$", ".")))
    return targets


def _mentioned_targets(text: str) -> set[str]:
    """`make X` in inline code and in code blocks (not make in prose, as in "make itself")."""
    mentioned = set(re.findall(r"`make ((?:[A-Z_]+=\S+ )*)?([a-z][a-z0-9-]*)", text))
    found = {target for _, target in mentioned}
    for block in re.findall(r"```.*?```|^(?: {4}|\t).*$", text, flags=re.S | re.M):
        found.update(re.findall(r"(?:^|\s|;|&&)make (?:-\S+ )*(?:[A-Z_]+=\S+ )*([a-z][a-z0-9-]*)", block, flags=re.M))
    return found


def test_every_make_target_the_docs_mention_exists() -> None:
    targets = _makefile_targets()
    assert {"demo", "test", "triton", "bench-report"} <= targets
    missing = {}
    for path in _doc_files():
        unknown = sorted(_mentioned_targets(path.read_text()) - targets)
        if unknown:
            missing[str(path.relative_to(ROOT))] = unknown
    assert missing == {}, "the documentation mentions make targets the Makefile does not have"


def test_readme_is_short_leads_with_the_two_commands_and_links_every_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    first_block = readme.split("```", 2)[1]
    assert re.search(r"^make demo\b", first_block, re.M) and re.search(r"^make test\b", first_block, re.M)
    unlinked = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if f"(docs/{p.name})" not in readme]
    assert unlinked == []
    assert "(docs/sample_overlay.png)" in readme


# --- docs/troubleshooting.md quotes the messages the code prints --------------------------------------------------
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"
WILD = None  # a placeholder: any text, on either side
DOC_PLACEHOLDER = re.compile(r"<[^>]+>|\.\.\.|…|\b(?:HOST:PORT|N|NAME|X|X\.Y|PYTHON|DIR|REASON)\b")
PY_FORMAT = re.compile(r"%[-0-9.]*[sdfgr]")
SH_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
SH_EXPANSION = re.compile(r"\$(?:\{[^}]*\}|\([^)]*\)|[A-Za-z_][A-Za-z0-9_]*|[0-9#?@*])")


def _tokens(text: str, placeholder: re.Pattern[str]) -> list[str | None]:
    """Characters of the text, a placeholder becoming one WILD."""
    out: list[str | None] = []
    pos = 0
    for m in placeholder.finditer(text):
        out += [*text[pos:m.start()], WILD]
        pos = m.end()
    return out + list(text[pos:])


def _python_templates(path: Path) -> list[list[str | None]]:
    """Every string constant and f-string of a module (implicit concatenation joined by the parser)."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.JoinedStr):
            tokens: list[str | None] = []
            for part in node.values:
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    tokens += _tokens(part.value, PY_FORMAT)
                else:
                    tokens.append(WILD)
            found.append(tokens)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) > 8:
            found.append(_tokens(node.value, PY_FORMAT))
    return found


def _code_templates() -> list[list[str | None]]:
    templates = []
    for folder in ("app", "kit"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "node_modules" not in path.parts:
                templates += _python_templates(path)
    for path in sorted((ROOT / "scripts").rglob("*.sh")):
        for line in path.read_text().splitlines():
            templates += [_tokens(s, SH_EXPANSION) for s in SH_STRING.findall(line) if len(s) > 8]
    return templates


def _quoted_in(doc: list[str | None], code: list[str | None]) -> bool:
    """Some text that the code's template prints contains some text that fits the doc's quote: both may hold
    placeholders (WILD), and the quote may be a part of the message. A placeholder of the code stands for a value
    (a path, a name, "30 s"): it takes at most one blank of the quote; the doc's take anything."""
    m = len(code)

    def closed(states: set[tuple[int, int]]) -> set[tuple[int, int]]:  # a code placeholder may stop at any point
        todo = sorted(states)
        while todo:
            j, _ = todo.pop()
            if j < m and code[j] is WILD and (j + 1, 0) not in states:
                states.add((j + 1, 0))
                todo.append((j + 1, 0))
        return states

    reach = {(j, 0) for j in range(m + 1)}  # (where in the code the text matched so far ends, blanks eaten there)
    for d in doc:
        if d is WILD:
            reach = {(j, 0) for j in range(min(j for j, _ in reach), m + 1)}
            continue
        nxt = set()
        for j, blanks in reach:
            if j < m and code[j] is WILD and (d != " " or blanks == 0):
                nxt.add((j, blanks + (d == " ")))
            elif j < m and code[j] == d:
                nxt.add((j + 1, 0))
        reach = closed(nxt)
        if not reach:
            return False
    return True


def _troubleshooting_quotes() -> list[str]:
    """The `code spans` of the first column of the page's table: what a user sees, quoted."""
    quotes = []
    for line in TROUBLESHOOTING.read_text().splitlines():
        cells = line.strip().strip("|").split("|")
        if line.startswith("|") and not set(line) <= set("|- ") and cells[0].strip() != "you see":
            quotes += re.findall(r"`([^`]+)`", cells[0])
    return quotes


def test_every_message_troubleshooting_quotes_is_printed_by_the_code() -> None:
    quotes = _troubleshooting_quotes()
    assert len(quotes) >= 8
    templates = _code_templates()
    missing = []
    for quote in quotes:
        doc = _tokens(quote, DOC_PLACEHOLDER)
        words = set(re.findall(r"[A-Za-z]{4,}", DOC_PLACEHOLDER.sub(" ", quote)))
        candidates = [t for t in templates if any(w in "".join(c or " " for c in t) for w in words)]
        if not any(_quoted_in(doc, t) for t in candidates):
            missing.append(quote)
    assert missing == [], "docs/troubleshooting.md quotes messages the code does not print"


def test_the_quote_matcher_tells_printed_from_invented_messages() -> None:
    code = _tokens("Triton not reachable at $host_uri; run 'make triton'", SH_EXPANSION)
    assert _quoted_in(_tokens("Triton not reachable at HOST:PORT; run 'make triton'", DOC_PLACEHOLDER), code)
    assert _quoted_in(_tokens("not reachable at 127.0.0.1:8001", DOC_PLACEHOLDER), code)  # a part, an example
    assert not _quoted_in(_tokens("Triton unreachable at HOST:PORT", DOC_PLACEHOLDER), code)
    assert not _quoted_in(_tokens("Triton not reachable at HOST:PORT; run 'make demo'", DOC_PLACEHOLDER), code)
