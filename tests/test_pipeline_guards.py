"""Pipeline files and folders as an unkind world gives them: an alias bomb, inputs inside the folders a run
clears, foreign files in an output folder, and no image for RUNTIME=auto."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAIN = ROOT / "tests" / "data" / "pipelines" / "run" / "chain.yml"
SEG = ROOT / "def" / "one-operator-pipeline.yml"

# Nine levels of nine aliases: 9**9 (387 million) strings once expanded, ~530 bytes on disk.
BOMB = """api-version: 0.4.0
name: laughs
operators:
- name: op
  container:
    image: clara/simple-operator
    tag: 0.1.0
  variables:
    A: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
    B: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
    C: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
    D: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
    E: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
    F: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
    G: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
    H: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
    I: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""
# Measures the peak RSS of a command's process tree (KiB on Linux), under a 4 GiB address-space cap so a
# regression cannot take the shared machine down with it.
PEAK_RSS = """
import resource, subprocess, sys
cap = 4 << 30
def limit():
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
proc = subprocess.run(sys.argv[1:], preexec_fn=limit, capture_output=True, text=True, timeout=120)
sys.stderr.write(proc.stdout + proc.stderr)
print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def ours(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("make")]


def error_line(stderr: str) -> str:
    """The one error line, which ends the output (info and warning lines may come before it)."""
    errors = [line for line in ours(stderr) if "error" in line]
    assert len(errors) == 1 and ours(stderr)[-1] == errors[0], stderr
    return errors[0]


@pytest.mark.parametrize("target", ["validate", "run-pipeline", "deploy"])
def test_alias_bomb_is_refused_before_anything_is_built(target: str, tmp_path: Path) -> None:
    bomb = tmp_path / "laughs.yml"
    bomb.write_text(BOMB)
    assert 500 < len(BOMB.encode()) < 600
    env = {**os.environ, "PIPELINE": str(bomb), "DRY_RUN": "1", "RUNTIME": "host", "ODK_RUN_DIR": str(tmp_path),
           "INPUT_DIR": str(tmp_path / "in"), "OUTPUT_DIR": str(tmp_path / "out")}
    (tmp_path / "in").mkdir()
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, "make", "-s", "-C", str(ROOT), target], env=env,
                          capture_output=True, text=True, timeout=180, check=False)
    code, peak_kib = map(int, proc.stdout.split())  # the command's own output went to stderr
    assert code != 0
    assert peak_kib < 300 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"
    message = f"{bomb}:9: error: anchor '&a': anchors and aliases are not allowed in a pipeline definition"
    assert message in proc.stderr
    if target != "validate":  # the problem (file:line), then the one [odk] error line
        assert [line.startswith("[odk] error: ") for line in ours(proc.stderr)] == [False, True], proc.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_alias_in_an_otherwise_valid_pipeline_names_its_line(tmp_path: Path) -> None:
    text = SEG.read_text()
    assert "&" not in text and "*" not in text
    aliased = tmp_path / "aliased.yml"
    lines = text.splitlines()
    first_name = next(i for i, line in enumerate(lines) if line.lstrip().startswith("- name:"))
    lines.insert(first_name, "x-shared: &shared {k: v}")
    aliased.write_text("\n".join(lines) + "\n")
    proc = subprocess.run([sys.executable, "-m", "kit.pipeline.validate", str(aliased)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert f"{aliased}:{first_name + 1}: error: anchor '&shared'" in proc.stdout + proc.stderr


def run_pipeline_make(tmp_path: Path, input_dir: Path, output_dir: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIPELINE": str(SEG), "RUNTIME": "host", "INPUT_DIR": str(input_dir),
           "OUTPUT_DIR": str(output_dir), "ODK_RUN_DIR": str(tmp_path / "run"), **extra}
    return subprocess.run(["make", "-s", "-C", str(ROOT), "run-pipeline"], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def write_inputs(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True)
    (folder / "case_1.nii.gz").write_bytes(os.urandom(4096))
    (folder / "notes.txt").write_text("the user's own notes\n")
    return digest(folder)


@pytest.mark.parametrize("layout", ["input-inside-output", "output-inside-input", "same"])
def test_overlapping_input_and_output_are_refused_before_anything_is_removed(layout: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    if layout == "input-inside-output":  # INPUT_DIR is the folder operator 'segmentation' gets emptied
        inp, output_dir = out / "segmentation" / "segmentation", out
    elif layout == "output-inside-input":
        inp, output_dir = tmp_path / "studies", tmp_path / "studies" / "results"
    else:
        inp, output_dir = out, out
    before = write_inputs(inp)
    proc = run_pipeline_make(tmp_path, inp, output_dir)
    assert proc.returncode != 0
    line = error_line(proc.stderr)
    assert line.startswith(f"[odk] error: INPUT_DIR={inp} overlaps the output folder ")
    assert "which the run empties first" in line
    assert digest(inp) == before, "the input studies are byte-identical"


def test_files_the_kit_did_not_create_are_never_deleted(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    write_inputs(inp)
    out = tmp_path / "out"
    foreign = out / "segmentation" / "segmentation"
    before = write_inputs(foreign)  # an OUTPUT_DIR that already holds someone's folder of that name
    proc = run_pipeline_make(tmp_path, inp, out)
    assert proc.returncode != 0
    line = error_line(proc.stderr)
    assert line == (f"[odk] error: the output folder {foreign} of operator 'segmentation' holds files "
                    "'make run-pipeline' did not create (no .segmentation.odk-output beside it); move them away "
                    "or choose another OUTPUT_DIR")
    assert digest(foreign) == before


def test_host_execution_only_when_asked(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    write_inputs(inp)
    pipeline = tmp_path / "chain.yml"
    pipeline.write_text(CHAIN.read_text().replace("TAG: 0.1.0", "TAG: odk-no-such-tag"))
    proc = run_pipeline_make(tmp_path, inp, tmp_path / "out", PIPELINE=str(pipeline), RUNTIME="auto")
    assert proc.returncode != 0
    line = error_line(proc.stderr)
    assert line.startswith("[odk] error: RUNTIME=auto: ")
    assert line.endswith("; build the image (make build), or pass RUNTIME=host to run the pipeline's commands "
                         "on this host as the current user")
    assert "no working container engine" in line or "clara/simple-operator:odk-no-such-tag" in line
    assert not (tmp_path / "out" / "a").exists(), "nothing ran"
    asked = subprocess.run(  # the probe's Dockerfile gives operators without a command the probe too
        [sys.executable, "-m", "kit.pipeline.run", str(pipeline), "--input-dir", str(inp), "--output-dir",
         str(tmp_path / "out"), "--runtime", "host", "--dockerfile", str(CHAIN.parent / "Dockerfile.probe"),
         "--log-dir", str(tmp_path / "logs")], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert asked.returncode == 0, asked.stderr[-2000:]
    assert "runtime host" in asked.stderr
