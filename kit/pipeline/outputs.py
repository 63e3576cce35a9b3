"""The output folders of a local pipeline run: checked before anything is removed, cleared only when the
kit made them.

The platform hands every operator empty output folders, so a run clears ``OUTPUT_DIR/<op>/<output>``
before the operator starts. Two rules keep that from ever losing data:

- no output folder may contain, lie inside, or be the input folder (INPUT_DIR), all checked before the
  first folder is touched;
- a folder is cleared only when it is empty or the kit created it: creating one leaves a marker beside it
  (``OUTPUT_DIR/<op>/.<output>.odk-output``, outside the folder the operator sees).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from kit.pipeline.model import PipelineError
from kit.pipeline.wiring import Plan

MARKER_SUFFIX = ".odk-output"


def marker(folder: Path) -> Path:
    return folder.parent / f".{folder.name}{MARKER_SUFFIX}"


def _overlap(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_outputs(plans: Iterable[Plan], input_dir: Path, output_root: Path) -> None:
    """PipelineError (one line) when clearing an output folder could remove an input or a foreign file."""
    for p in plans:
        for entry in p.outputs:
            check_output_folder(entry.host, f"operator '{p.operator.name}'", input_dir, output_root)


def check_output_folder(host: Path, owner: str, input_dir: Path, output_root: Path) -> None:
    """PipelineError (one line) when emptying ``host`` (an output folder of ``owner``) could remove an input or
    a file the kit did not create."""
    source = input_dir.resolve()
    root = output_root.resolve()
    folder = host.resolve()
    where = f"output folder {folder} of {owner}"
    if root not in folder.parents:
        raise PipelineError(f"refusing to clear the {where}: not under OUTPUT_DIR={root}")
    if _overlap(folder, source):
        raise PipelineError(f"INPUT_DIR={source} overlaps the {where}, which the run empties first; "
                            f"choose an INPUT_DIR and an OUTPUT_DIR (now {root}) that do not overlap")
    if host.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise PipelineError(f"the {where} exists and is not a folder; move it away or choose another OUTPUT_DIR")
    if folder.is_dir() and any(folder.iterdir()) and not marker(folder).is_file():
        raise PipelineError(f"the {where} holds files 'make run-pipeline' did not create (no "
                            f"{marker(folder).name} beside it); move them away or choose another OUTPUT_DIR")


def fresh(folder: Path) -> None:
    """Empty an output folder (checked by :func:`check_outputs`) as the platform hands out empty ones."""
    folder = folder.resolve()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    marker(folder).touch()
