"""The pipeline validator: clean real-world shapes, and every class of error at its line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from kit.pipeline.graph import downstream_of, find_cycle, topological_order
from kit.pipeline.validate import main, validate_file, validate_text
from kit.pipeline.yamlnodes import load_text

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "pipelines"
VALID = sorted((DATA / "valid").glob("*.yml")) + sorted((ROOT / "def").glob("*.yml"))
INVALID = sorted((DATA / "invalid").glob("*.yml"))
MARKER = re.compile(r"#\s*(ERROR|WARNING):\s*(.+?)\s*$")


def expected_markers(path: Path) -> list[tuple[int, str, str]]:
    """(line, severity, message fragment) from `# ERROR: ...` / `# WARNING: ...` comments."""
    found = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if m := MARKER.search(text):
            found.append((number, m[1].lower(), m[2]))
    return found


def test_fixtures_exist() -> None:
    assert len(VALID) >= 8 and len(INVALID) >= 15
    assert {p.name for p in VALID} >= {"one-operator-pipeline.yml", "two-operator-pipeline.yml"}


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_real_shapes_validate_clean(path: Path) -> None:
    assert [str(p) for p in validate_file(path)] == []


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_each_problem_is_reported_at_its_line(path: Path) -> None:
    expected = expected_markers(path)
    assert expected, f"{path.name} has no # ERROR:/# WARNING: markers"
    problems = validate_file(path)
    got = [(p.line, p.severity, p.message) for p in problems]
    assert [(line, sev) for line, sev, _ in got] == [(line, sev) for line, sev, _ in expected], got
    for (_, _, message), (_, _, fragment) in zip(got, expected, strict=True):
        assert fragment in message, (message, fragment)
    for problem in problems:
        assert str(problem).startswith(f"{path}:{problem.line}: {problem.severity}: ")


def test_cli_exit_codes_and_output_format(tmp_path: Path) -> None:
    bad = DATA / "invalid" / "cycle.yml"
    proc = subprocess.run([sys.executable, "-m", "kit.pipeline.validate", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert f"{bad}:7: error: the operators form a cycle" in proc.stdout
    warnings_only = DATA / "invalid" / "unknown-keys.yml"
    assert main([str(warnings_only)]) == 0
    assert main([str(ROOT / "def")]) == 0
    assert main([str(DATA / "invalid")]) == 1
    assert main([str(tmp_path)]) == 1  # no pipeline files at all
    assert main([str(tmp_path / "missing.yml")]) == 1


def test_make_validate_checks_def_and_one_file() -> None:
    proc = subprocess.run(["make", "-s", "validate"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "def/one-operator-pipeline.yml: ok" in proc.stdout
    assert "def/two-operator-pipeline.yml: ok" in proc.stdout
    bad = "tests/data/pipelines/invalid/from-missing.yml"
    proc = subprocess.run(["make", "-s", "validate", f"PIPELINE={bad}"], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert proc.returncode != 0
    assert f"{bad}:10: error: operator 'b' reads from 'segmentaton'" in proc.stdout


def test_loader_keeps_lines_and_types() -> None:
    doc = load_text("a: 0.4.0\nb:\n  - 8000\n  - {c: yes}\n", Path("x.yml"))
    assert doc.root == {"a": "0.4.0", "b": [8000, {"c": True}]}
    assert doc.root.key_line("b") == 2 and doc.root["b"].line_of(1) == 4
    assert doc.root["b"][1].line == 4


def test_loader_is_safe() -> None:
    problems = validate_text(Path("inline.yml"), "!!python/object/apply:os.system ['true']\n")
    assert problems and "not valid YAML" in problems[0].message


def test_graph_order_cycles_and_downstream() -> None:
    upstream = {"export": ["seg"], "seg": ["reader"], "reader": [], "qa": ["seg"]}
    assert topological_order(["export", "seg", "reader", "qa"], upstream) == ["reader", "seg", "export", "qa"]
    assert find_cycle(list(upstream), upstream) is None
    assert downstream_of("seg", upstream) == {"export", "qa"}
    cyclic = {"a": ["b"], "b": ["a"]}
    assert find_cycle(["a", "b"], cyclic) == ["a", "b", "a"]
    with pytest.raises(ValueError, match="cycle"):
        topological_order(["a", "b"], cyclic)
