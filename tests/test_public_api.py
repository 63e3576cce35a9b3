"""The operator library's public API is the contract: the kit's tooling uses nothing else (no private name of
``odk``, no operator module), every public name has a docstring, and docs/operator-library.md documents them all."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import odk
import odk.dicom

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = {"odk": set(odk.__all__), "odk.dicom": set(odk.dicom.__all__)}
VALUES = {"__version__", "PALETTE", "SIDECAR_SUFFIX"}  # constants: documented on the page, no docstring of their own


def private_uses(source: str, rel: str) -> list[str]:
    """What the module ``rel`` (its ``source``) uses of ``odk`` or ``app`` beyond the public API, one line each
    (``file:line: what``)."""
    tree = ast.parse(source, rel)
    found: list[str] = []
    modules: dict[str, str] = {}  # local name -> "odk" / "odk.dicom"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top == "app":
                    found.append(f"{rel}:{node.lineno}: import {alias.name} (an operator module)")
                elif alias.name in PUBLIC:
                    modules[alias.asname or top] = alias.name if alias.asname else "odk"
                elif top == "odk":
                    found.append(f"{rel}:{node.lineno}: import {alias.name} (a private module of the library)")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top = node.module.split(".")[0]
            if top == "app":
                found.append(f"{rel}:{node.lineno}: from {node.module} import ... (an operator module)")
            elif node.module in PUBLIC:
                for alias in node.names:
                    if alias.name not in PUBLIC[node.module] and not (node.module == "odk" and alias.name == "dicom"):
                        found.append(f"{rel}:{node.lineno}: from {node.module} import {alias.name} (not public)")
            elif top == "odk":
                found.append(f"{rel}:{node.lineno}: from {node.module} import ... (a private module)")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            module = modules[node.value.id]
            if module == "odk" and node.attr == "dicom":
                continue
            if node.attr not in PUBLIC[module]:
                found.append(f"{rel}:{node.lineno}: {node.value.id}.{node.attr} (not in {module}.__all__)")
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
              and isinstance(node.value.value, ast.Name) and modules.get(node.value.value.id) == "odk"
              and node.value.attr == "dicom" and node.attr not in PUBLIC["odk.dicom"]):
            found.append(f"{rel}:{node.lineno}: odk.dicom.{node.attr} (not in odk.dicom.__all__)")
    return found


def test_kit_uses_only_the_public_api() -> None:
    """kit/ imports ``odk`` and the names of ``odk.__all__`` / ``odk.dicom.__all__`` only, never an operator
    module (the benchmark's profiler loads the operator it is given by name: a plug-in, not an import)."""
    files = sorted((ROOT / "kit").rglob("*.py"))
    assert len(files) > 50
    offenders = [line for path in files for line in private_uses(path.read_text(), str(path.relative_to(ROOT)))]
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("source, expected", [
    ("import odk\nodk.Study\nodk.forward.__module__\n", []),
    ("from odk import Study, zscore\nfrom odk.dicom import send\nimport odk.dicom\nodk.dicom.send\n", []),
    ("import odk\nodk.transforms\n", ["odk.transforms"]),
    ("import odk as o\no._WHERE\n", ["o._WHERE"]),
    ("from odk.transforms import zscore\n", ["from odk.transforms"]),
    ("from odk import _WHERE\n", ["_WHERE"]),
    ("import odk.files\n", ["import odk.files"]),
    ("from app.main import process\n", ["from app.main"]),
    ("import app.export\n", ["import app.export"]),
    ("import odk\nodk.dicom.store\n", ["odk.dicom.store"]),
])
def test_the_check_tells_public_from_private(source: str, expected: list[str]) -> None:
    found = private_uses(source, "kit/probe.py")
    assert len(found) == len(expected), found
    for line, want in zip(found, expected, strict=True):
        assert want in line, found


@pytest.mark.parametrize("module", ["odk", "odk.dicom"])
def test_every_public_name_has_a_docstring(module: str) -> None:
    mod = odk if module == "odk" else odk.dicom
    missing = []
    for name in sorted(PUBLIC[module] - VALUES):
        value = getattr(mod, name)
        doc = value.__dict__.get("__doc__") if inspect.isclass(value) else getattr(value, "__doc__", None)
        # A dataclass without a docstring of its own gets its signature as one: that is none.
        if not (doc or "").strip() or (inspect.isclass(value) and doc.startswith(f"{value.__name__}(")):
            missing.append(name)
    assert not missing, f"{module}: no docstring: {missing}"


@pytest.mark.parametrize("module", ["odk", "odk.dicom"])
def test_no_public_name_is_also_a_submodule(module: str) -> None:
    """A submodule of the same name as a public name would replace it as an attribute of the package once any
    module imports it (``from odk.dicom import scan`` would give the module)."""
    folder = ROOT / "lib" / "odk-operator" / "src" / Path(*module.split("."))
    submodules = {p.stem for p in folder.glob("*.py")}
    submodules |= {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
    assert sorted(PUBLIC[module] & submodules) == []


def test_the_library_page_documents_every_public_name() -> None:
    page = (ROOT / "docs" / "operator-library.md").read_text()
    mentioned = set(re.findall(r"`(?:odk\.(?:dicom\.)?)?([A-Za-z_][A-Za-z0-9_]*)", page))
    for module, names in PUBLIC.items():
        missing = sorted(names - mentioned)
        assert not missing, f"docs/operator-library.md does not mention {module}: {missing}"
