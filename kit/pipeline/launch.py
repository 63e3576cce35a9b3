"""The command line of one operator: on the host (operators built from this repo) or in a container."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kit.pipeline.wiring import Plan

PYTHON_RE = re.compile(r"^python(3(\.\d+)?)?$")
# The job name when JOB_NAME is not set: the Makefile's default too (tests/test_defaults.py keeps them equal).
DEFAULT_JOB_NAME = "odk-job"


@dataclass(frozen=True)
class ImageDefaults:
    """ENTRYPOINT and CMD of an image, as a Dockerfile declares them."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()


def _instruction_args(text: str) -> tuple[str, ...]:
    text = text.strip()
    if text.startswith("["):
        return tuple(str(a) for a in json.loads(text))
    return ("/bin/sh", "-c", text)


def dockerfile_defaults(dockerfile: Path) -> ImageDefaults:
    """The last ENTRYPOINT and CMD of ``dockerfile`` (exec or shell form; continuation lines joined)."""
    joined = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    for line in joined.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word.upper() == "ENTRYPOINT":
            entrypoint, cmd = _instruction_args(rest), ()  # a new ENTRYPOINT resets CMD
        elif word.upper() == "CMD":
            cmd = _instruction_args(rest)
    return ImageDefaults(entrypoint=entrypoint, cmd=cmd)


def effective_argv(defaults: ImageDefaults, command: Sequence[str]) -> list[str]:
    """What the container runs: a pipeline ``command`` replaces CMD and is passed to ENTRYPOINT if any."""
    return [*defaults.entrypoint, *(command or defaults.cmd)]


def is_repo_image(image: str, repo_image: str) -> bool:
    """True for IMAGE itself, or IMAGE pushed under a registry host (``host/IMAGE``)."""
    return image == repo_image or image.endswith("/" + repo_image)


def host_argv(argv: Sequence[str], python: Path) -> list[str]:
    """The image's command on this machine: its ``python`` becomes the project's virtualenv python."""
    if not argv:
        raise ValueError("the operator has no command and its image no ENTRYPOINT/CMD")
    first = os.path.basename(argv[0])
    return [str(python), *argv[1:]] if PYTHON_RE.match(first) else list(argv)


def container_argv(engine: str, image: str, command: Sequence[str], p: Plan, env: Mapping[str, str],
                   name: str, user: str | None) -> list[str]:
    """``ENGINE run`` with the operator's folders mounted at its declared paths and its environment."""
    argv = [engine, "run", "--rm", "--name", name, "--network", "host"]
    if user:
        argv += ["--user", user]
    for entry in p.inputs:
        argv += ["--volume", f"{entry.host}:{entry.path}:ro"]
    for entry in p.outputs:
        argv += ["--volume", f"{entry.host}:{entry.path}"]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    return [*argv, image, *command]


def shown(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
