"""``make new-operator``: a runnable operator skeleton, built only on the operator library's public API.

:func:`generate` writes, under a checkout's root, the operator's one file ``app/<name>.py`` (run as
``python -u -m app.<name>``), its pipeline ``def/<name>-pipeline.yml`` (the kit's operator image, with the
operator's ``command``), its environment ``env/<name>.list`` (what ``make run-local OPERATOR=<name>`` applies)
and its test ``tests/test_operator_<name>.py``, from the templates in ``templates/``. Three kinds:
``segmentation`` (the five steps of app/main.py: a label map, overlay and report), ``classification`` (a
study-level result in the report, no label map) and ``passthrough`` (no Triton: a report of the input's
intensities). The first two run on the demo model segmentation_liver_v1 as they are.

A name that is not a valid operator name, or whose files exist, is refused before anything is written.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).resolve().parent / "templates"
KINDS = ("segmentation", "classification", "passthrough")
NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
# app/ already uses these (the package's own modules and the segmentation operator's entry).
RESERVED = frozenset({"main", "dicom", "export"})
DEMO_MODEL = "segmentation_liver_v1"


class ScaffoldError(ValueError):
    """The operator cannot be made; the message is the one line to show."""


@dataclass(frozen=True)
class Kind:
    description: str
    triton: bool
    cpu: int
    memory: int
    checks: str  # the kind's own assertions in the generated test (inside the loop over the sample studies)


KIND = {
    "segmentation": Kind(
        "CT segmentation with a 3D model on Triton Inference Server (label map, overlay, report).", True, 2, 4096,
        "        assert isinstance(result, odk.LabelMapResult) and result.volumes_ml, result\n"
        "        assert (out / f\"{odk.stem(src)}_seg.nii.gz\").is_file()\n"),
    "classification": Kind(
        "Study-level classification of CT volumes with a model on Triton Inference Server (JSON report).", True, 2,
        4096,
        "        probabilities = result.extra[\"probabilities\"]\n"
        "        assert abs(sum(probabilities.values()) - 1.0) < 1e-3, probabilities\n"
        "        assert result.extra[\"predicted\"] == max(probabilities, key=probabilities.get)\n"
        "        assert not list(out.glob(\"*.nii*\"))\n"),
    "passthrough": Kind(
        "A report of the intensities of each CT volume (no model).", False, 1, 1024,
        "        stats = result.extra[\"intensity\"]\n"
        "        assert stats[\"min\"] <= stats[\"p50\"] <= stats[\"max\"], stats\n"
        "        assert result.extra[\"voxels\"] == result.shape[0] * result.shape[1] * result.shape[2]\n"),
}


def files_of(name: str) -> dict[str, Path]:
    """What ``make new-operator NAME=name`` writes, relative to the checkout's root."""
    return {"operator": Path("app") / f"{name}.py", "pipeline": Path("def") / f"{name}-pipeline.yml",
            "env": Path("env") / f"{name}.list", "test": Path("tests") / f"test_operator_{name}.py"}


def check_name(name: str, root: Path) -> None:
    """ScaffoldError (one line: why, what to do) unless ``name`` is a free, valid operator name."""
    if not NAME_RE.fullmatch(name):
        raise ScaffoldError(f"NAME={name!r} is not an operator name: lowercase letters, digits and '_', starting"
                            " with a letter (it becomes the Python module app.<name>), e.g. NAME=lesion_check")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name) or name in RESERVED:
        raise ScaffoldError(f"NAME={name} is taken (a Python keyword, or a module of app/: "
                            f"{', '.join(sorted(RESERVED))}); choose another name")
    taken = [str(p) for p in [*files_of(name).values(), Path("app") / name] if (root / p).exists()]
    if taken:
        raise ScaffoldError(f"operator {name} exists ({', '.join(taken)}); choose another NAME or remove those")


def render(name: str, kind: str, image: str, tag: str) -> dict[Path, str]:
    """The files of operator ``name`` of ``kind`` (relative path -> text)."""
    k = KIND[kind]
    op = name.replace("_", "-")
    values = {
        "name": name, "kind": kind, "op": op, "description": k.description, "image": image, "tag": tag,
        "cpu": str(k.cpu), "memory": str(k.memory),
        "variables": f"    TRITON_MODEL_NAME: {DEMO_MODEL}\n    ODK_LOG_LEVEL: INFO\n" if k.triton
        else "    ODK_LOG_LEVEL: INFO\n",
        "models": f"  models:\n  - name: {DEMO_MODEL}\n" if k.triton else "",
        "triton": ("\n# --- Triton (run-local points NVIDIA_TRITON_GRPCURI at the Triton of `make triton`) ---------\n"
                   f"NVIDIA_TRITON_GRPCURI=localhost:8001\nTRITON_MODEL_NAME={DEMO_MODEL}\nTRITON_TRANSPORT=auto\n")
        if k.triton else "",
        "against": ", on the embedded Triton (fixture triton_server)" if k.triton else "",
        "args": "triton_server, " if k.triton else "",
        "grpc": "triton_server.grpc_url" if k.triton else "None",
        "model": ", TRITON_MODEL_NAME=triton_server.model_name" if k.triton else "",
        "checks": k.checks,
    }
    sources = {"operator": f"{kind}.py.tmpl", "pipeline": "pipeline.yml.tmpl", "env": "env.list.tmpl",
               "test": "test.py.tmpl"}
    return {path: Template((TEMPLATES / sources[what]).read_text()).substitute(values)
            for what, path in files_of(name).items()}


def generate(name: str, kind: str, root: Path, image: str = "clara/simple-operator", tag: str = "0.1.0") -> list[Path]:
    """Write operator ``name`` of ``kind`` under ``root``; the files written. ScaffoldError, before anything
    is written, for a bad kind or name."""
    if kind not in KINDS:
        raise ScaffoldError(f"KIND={kind!r} is not one of {', '.join(KINDS)}")
    check_name(name, root)
    files = render(name, kind, image, tag)
    written = []
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as f:  # never over a file made meanwhile
            f.write(text)
        written.append(path)
    return written
