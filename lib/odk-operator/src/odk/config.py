"""Operator configuration from the environment (see env.list for every variable and its default)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

TRANSPORTS = ("auto", "grpc", "shm")
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message says which and what is expected."""


@dataclass(frozen=True)
class OperatorConfig:
    """The operator's settings from the environment (env.list lists every variable and its default).

    >>> cfg = from_env()
    >>> cfg.triton_url, cfg.model_name, cfg.batch_size    # ('localhost:8001', 'segmentation_liver_v1', 0)
    """

    triton_url: str = "localhost:8001"
    model_name: str = "segmentation_liver_v1"
    model_version: str = ""  # "" = the version Triton serves by default
    model_input: str = ""  # "" = the model's only input
    model_output: str = ""  # "" = the model's only output
    transport: str = "auto"
    ready_timeout_s: float = 120.0
    request_timeout_s: float = 300.0
    retries: int = 3
    overlap: float = 0.25
    blend: str = "gaussian"
    batch_size: int = 0  # 0 = the model's max_batch_size
    largest_component: bool = True
    overlay: bool = True
    # Overrides of the model's own parameters (config.pbtxt `parameters`); None = use the model's.
    spacing_mm: tuple[float, float, float] | None = None
    hu_window: tuple[float, float] | None = None
    # Size guards (app.guards): a study above either limit is refused before its voxels are allocated.
    max_voxels: int = 2**29  # input voxels, e.g. 512 x 512 x 2048
    max_memory_mb: int = 0  # estimated working memory per study; 0 = 80 % of this machine's memory


def number_list(raw: str) -> tuple[float, ...]:
    """ "2.5, 2.5,3" -> (2.5, 2.5, 3.0); () when any item is not a number."""
    try:
        return tuple(float(v) for v in raw.replace(" ", "").split(","))
    except ValueError:
        return ()


def _floats(name: str, raw: str, n: int) -> tuple[float, ...]:
    values = number_list(raw)
    if len(values) != n or not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{name}={raw!r}: expected {n} comma-separated numbers, all finite")
    return values


def number(env: Mapping[str, str], name: str, default: float, kind: type = float, minimum: float = 0.0,
           maximum: float = 1e9, below: bool = False) -> float:
    """The setting ``name`` of ``env`` as a number within [minimum, maximum] (``below``: [minimum, maximum)),
    ``default`` when unset or empty; ConfigError (one line, the variable and what is expected) otherwise. NaN
    and infinities are refused. For an operator's own settings, as ODK_* are read here.

    >>> number(os.environ, "ODK_THRESHOLD", 0.5, maximum=1.0)     # 0.5, or e.g. 0.3 from ODK_THRESHOLD=0.3
    """
    raw = env.get(name, "").strip()
    if not raw:
        return default
    what = "a whole number" if kind is int else "a number"
    upper = f"{'<' if below else '<='} {maximum:g}"
    expected = f"{name}={raw!r}: expected {what} >= {minimum:g} and {upper}, e.g. {default:g}"
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(expected) from None
    if not math.isfinite(value) or not minimum <= value <= maximum or (below and value == maximum):
        raise ConfigError(expected)
    return value


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A 1/0 (true/false, yes/no, on/off) setting; ConfigError on anything else."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in TRUE:
        return True
    if raw in FALSE:
        return False
    raise ConfigError(f"{name}={raw!r}: expected 1 or 0 (true/false, yes/no, on/off)")


def log_level(env: Mapping[str, str]) -> str:
    """The logging level of ODK_LOG_LEVEL (DEBUG, INFO, WARNING or ERROR; default INFO); ConfigError
    otherwise.

    >>> log_level({"ODK_LOG_LEVEL": "debug"})
    'DEBUG'
    """
    raw = env.get("ODK_LOG_LEVEL", "").strip().upper() or "INFO"
    if raw not in LOG_LEVELS:
        raise ConfigError(f"ODK_LOG_LEVEL={raw!r}: expected one of {', '.join(LOG_LEVELS)}")
    return raw


def triton_url(env: Mapping[str, str]) -> str:
    """gRPC address of Triton: NVIDIA_TRITON_GRPCURI, else NVIDIA_CLARA_TRTISURI, else TRITON_URL.

    Clara's legacy NVIDIA_CLARA_TRTISURI named Triton's HTTP endpoint: its standard HTTP port 8000 is
    taken as the standard gRPC port 8001 on the same host.
    """
    for name in ("NVIDIA_TRITON_GRPCURI", "NVIDIA_CLARA_TRTISURI", "TRITON_URL"):
        raw = env.get(name, "").strip()
        if raw:
            legacy = name == "NVIDIA_CLARA_TRTISURI"
            raw = raw.removeprefix("grpc://").rstrip("/")
            if legacy:
                raw = raw.removeprefix("http://")
            if "://" in raw or not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}", raw):
                raise ConfigError(f"{name}={env[name].strip()!r}: expected host:port of Triton's gRPC endpoint,"
                                  " e.g. localhost:8001")
            if legacy and raw.endswith(":8000"):
                raw = raw[: -len("8000")] + "8001"
            return raw
    return OperatorConfig.triton_url


def from_env(env: Mapping[str, str] | None = None) -> OperatorConfig:
    """Read the operator's configuration; raise ConfigError with one clear line on a bad value."""
    env = os.environ if env is None else env
    transport = env.get("TRITON_TRANSPORT", "auto").strip().lower() or "auto"
    if transport not in TRANSPORTS:
        raise ConfigError(f"TRITON_TRANSPORT={transport!r}: expected one of {', '.join(TRANSPORTS)}")
    blend = env.get("ODK_BLEND", "gaussian").strip().lower() or "gaussian"
    if blend not in ("gaussian", "constant"):
        raise ConfigError(f"ODK_BLEND={blend!r}: expected gaussian or constant")
    overlap = number(env, "ODK_OVERLAP", OperatorConfig.overlap, maximum=1.0, below=True)
    spacing = env.get("ODK_SPACING_MM", "").strip()
    window = env.get("ODK_HU_WINDOW", "").strip()
    hu = _floats("ODK_HU_WINDOW", window, 2) if window else None
    if hu is not None and hu[1] <= hu[0]:
        raise ConfigError(f"ODK_HU_WINDOW={window!r}: expected low,high with low < high")
    sp = _floats("ODK_SPACING_MM", spacing, 3) if spacing else None
    if sp is not None and not all(0 < v <= 100 for v in sp):
        raise ConfigError(f"ODK_SPACING_MM={spacing!r}: spacings must be above 0 and at most 100 mm")
    return OperatorConfig(
        triton_url=triton_url(env),
        model_name=env.get("TRITON_MODEL_NAME", "").strip() or OperatorConfig.model_name,
        model_version=env.get("TRITON_MODEL_VERSION", "").strip(),
        model_input=env.get("TRITON_MODEL_INPUT", "").strip(),
        model_output=env.get("TRITON_MODEL_OUTPUT", "").strip(),
        transport=transport,
        ready_timeout_s=number(env, "TRITON_READY_TIMEOUT", OperatorConfig.ready_timeout_s, minimum=0.1,
                                maximum=86400),
        request_timeout_s=number(env, "TRITON_REQUEST_TIMEOUT", OperatorConfig.request_timeout_s, minimum=0.1,
                                  maximum=86400),
        retries=int(number(env, "TRITON_RETRIES", OperatorConfig.retries, int, maximum=100)),
        overlap=overlap,
        blend=blend,
        batch_size=int(number(env, "ODK_BATCH_SIZE", 0, int, maximum=4096)),
        max_voxels=int(number(env, "ODK_MAX_VOXELS", OperatorConfig.max_voxels, int, minimum=1, maximum=1e15)),
        max_memory_mb=int(number(env, "ODK_MAX_MEMORY_MB", 0, int, maximum=1e9)),
        largest_component=flag(env, "ODK_LARGEST_COMPONENT", True),
        overlay=flag(env, "ODK_OVERLAY", True),
        spacing_mm=(sp[0], sp[1], sp[2]) if sp else None,
        hu_window=(hu[0], hu[1]) if hu else None,
    )
