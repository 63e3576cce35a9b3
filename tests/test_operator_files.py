"""The operators in app/ are each one file built on the operator library's public API: every ``odk.<name>`` they
use is in ``odk.__all__``, and they import neither a module of the library nor another operator."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import odk

ROOT = Path(__file__).resolve().parents[1]
OPERATORS = [ROOT / "app" / name for name in ("main.py", "slices.py", "classification.py")]


@pytest.mark.parametrize("path", OPERATORS, ids=[p.stem for p in OPERATORS])
def test_operator_uses_only_the_public_api(path: Path) -> None:
    tree = ast.parse(path.read_text())
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "odk"}
    assert used and used <= set(odk.__all__), sorted(used - set(odk.__all__))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if m.startswith(("odk.", "app"))}, imported
    assert "__main__" in path.read_text() and "odk.main(odk.study_operator(process, prepare))" in path.read_text()
