"""Field-level facts about Clara pipeline definitions (api-version 0.3.0 to 0.8.x)."""

from __future__ import annotations

import re
from typing import Any

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
PLACEHOLDER_RE = re.compile(r"\$\{\{\s*([^}\s]*)\s*\}\}")

OLDEST = (0, 3, 0)
NEWEST_MINOR = (0, 8)
TYPED_IO_SINCE = (0, 5, 0)
MODELS_SINCE = (0, 6, 0)
SERVICES_DEPRECATED_SINCE = (0, 7, 1)

ORCHESTRATORS = ("clara", "argo")  # compared case-insensitively
IO_TYPES = ("stream", "array", "string", "primitive")

TOP_KEYS = ("api-version", "name", "orchestrator", "pull-secrets", "parameters", "operators")
OPERATOR_KEYS = ("name", "description", "container", "variables", "requests", "input", "output",
                 "services", "models")
CONTAINER_KEYS = ("image", "tag", "command")
REQUEST_KEYS = ("cpu", "gpu", "memory")
INPUT_KEYS = ("from", "name", "path", "type", "element-type", "shape")
OUTPUT_KEYS = ("name", "path", "type", "element-type", "shape")
SERVICE_KEYS = ("name", "container", "requests", "variables", "connections")
CONNECTION_KEYS = ("http", "volume")
HTTP_KEYS = ("name", "port")
VOLUME_KEYS = ("name", "path")
MODEL_KEYS = ("name",)


def parse_version(value: Any) -> tuple[int, int, int] | None:
    """``"0.4.0"`` -> (0, 4, 0); None when it is not a three-part version string."""
    if not isinstance(value, str):
        return None
    m = VERSION_RE.match(value.strip())
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def version_problem(value: Any) -> str | None:
    """Why ``value`` is not a supported api-version, or None when it is."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"api-version {value!r} is read by YAML as a number; write it as a version like 0.4.0"
    version = parse_version(value)
    if version is None:
        return f"api-version {value!r} is not a version like 0.4.0"
    if version < OLDEST or version[:2] > NEWEST_MINOR:
        return f"api-version {value} is not supported (0.3.0 to 0.8.x)"
    return None


def name_problem(value: Any, what: str) -> str | None:
    """Why ``value`` is not a valid operator/output/pipeline name, or None."""
    if not isinstance(value, str):
        return f"{what} must be a string, not {type_name(value)}"
    if not value:
        return f"{what} is empty"
    if len(value) > 255:
        return f"{what} '{value[:20]}...' is {len(value)} characters long (at most 255)"
    if not NAME_RE.match(value):
        bad = sorted({c for c in value if not re.match(r"[A-Za-z0-9_-]", c)})
        return f"{what} '{value}' has characters outside [A-Za-z0-9_-]: {' '.join(map(repr, bad))}"
    return None


def path_problem(value: Any, what: str) -> str | None:
    if not isinstance(value, str) or not value:
        return f"{what} must be a non-empty string, not {type_name(value)}"
    if not value.startswith("/"):
        return f"{what} must be absolute (start with /), not '{value}'"
    return None


def placeholders(value: Any) -> list[str]:
    """Names used as ``${{NAME}}`` in a string (empty for anything else)."""
    return PLACEHOLDER_RE.findall(value) if isinstance(value, str) else []


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"
