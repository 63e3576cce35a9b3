"""`make new-operator`: the skeleton of each KIND runs end to end before anyone edits it (`make run-local` on
the host and in the image, `make run-pipeline`, `make validate`, `make deploy` renders it), its own generated
test passes, a new user's edit of its one file shows in its outputs, and a bad or taken name is refused in one
line with nothing written.

Everything is generated into a copy of this checkout (the files git tracks or would track, .venv linked), so
nothing is left in the checkout; the copy's scripts run the copy's operators."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from container_helpers import OPERATOR_IMAGE, OPERATOR_TAG, ROOT, one_error_line, output_of
from operator_helpers import run_operator

import odk

SAMPLE = ROOT / "local" / "input"
STEMS = sorted(odk.stem(p) for p in SAMPLE.glob("*.nii*"))
KINDS = ("segmentation", "classification", "passthrough")
# The image the container test builds from the copy (every scaffold in it); not the suite's operator image.
IMAGE, TAG = OPERATOR_IMAGE, f"{OPERATOR_TAG}-scaffold"

pytestmark = pytest.mark.skipif(not STEMS, reason="no sample study in local/input (make phantoms)")


def name_of(kind: str) -> str:
    return f"sc_{kind}"


def copy_checkout(dest: Path) -> Path:
    """The working tree as git sees it (tracked files and untracked ones it does not ignore), .venv linked."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel, follow_symlinks=False)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


def make(root: Path, target: str, env: dict[str, str] | None = None, timeout: float = 900,
         **variables: str) -> subprocess.CompletedProcess[str]:
    """`make TARGET VAR=value...` in ``root``, the caller's NVIDIA_/TRITON_/ODK_ variables left out."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("NVIDIA_", "TRITON_", "ODK_"))}
    return subprocess.run(["make", "-C", str(root), target, *(f"{k}={v}" for k, v in variables.items())],
                          capture_output=True, text=True, timeout=timeout, env={**clean, **(env or {})}, check=False)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, output_of(result)
    return result


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for d in ("app", "def", "env", "tests") if (root / d).is_dir()
                  for p in (root / d).rglob("*") if "__pycache__" not in p.parts)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout with one operator of each KIND made by `make new-operator`."""
    root = copy_checkout(tmp_path_factory.mktemp("checkout"))
    for kind in KINDS:
        result = ok(make(root, "new-operator", NAME=name_of(kind), KIND=kind, IMAGE=IMAGE, TAG=TAG))
        assert f"wrote app/{name_of(kind)}.py" in result.stderr, output_of(result)
    return root


@pytest.fixture(scope="module")
def run_dir(triton_server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ODK_RUN_DIR whose triton/ state is the session's embedded Triton (as `make triton` leaves it)."""
    path = tmp_path_factory.mktemp("run")
    (path / "triton").symlink_to(triton_server.run_dir)
    return path


def check_outputs(kind: str, out: Path) -> dict[str, dict]:
    """The reports of a scaffold's run on the sample, checked for its KIND."""
    reports = {}
    for stem in STEMS:
        report = json.loads((out / f"{stem}.json").read_text())
        keys = list(report)
        own = keys[keys.index("orientation") + 1:keys.index("model")]
        if kind == "segmentation":
            assert {"liver_volume_ml", "lesion_volume_ml", "labels"} <= set(own), report
            assert report["liver_volume_ml"] > 100, report
            assert (out / f"{stem}_seg.nii.gz").is_file() and (out / f"{stem}_overlay.png").is_file()
        elif kind == "classification":
            assert own == ["predicted", "probabilities", "windows"], report
            probs = report["probabilities"]
            assert list(probs) == ["background", "liver", "lesion"] and abs(sum(probs.values()) - 1) < 1e-3, probs
            assert report["predicted"] == "background" and report["windows"] >= 1, report
            assert report["model"]["name"] == "segmentation_liver_v1"
        else:
            assert own == ["voxels", "intensity"], report
            data = np.asanyarray(nib.load(SAMPLE / f"{stem}.nii.gz").dataobj).astype(np.float32)
            assert report["voxels"] == data.size
            assert report["intensity"]["min"] == round(float(data.min()), 4), report
            assert report["intensity"]["max"] == round(float(data.max()), 4), report
            assert report["transport"] == "" and report["model"] == {}, report
        if kind != "segmentation":
            assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.json" for s in STEMS)
        reports[stem] = report
    return reports


@pytest.fixture(scope="module")
def host_outputs(repo: Path, run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`make run-local RUNTIME=host OPERATOR=<name>` of each scaffold on the sample."""
    outs = {}
    for kind in KINDS:
        out = tmp_path_factory.mktemp(f"host-{kind}")
        result = ok(make(repo, "run-local", env={"ODK_RUN_DIR": str(run_dir)}, RUNTIME="host",
                         OPERATOR=name_of(kind), INPUT_DIR=str(SAMPLE), OUTPUT_DIR=str(out)))
        assert f"-m app.{name_of(kind)}" in result.stderr, output_of(result)
        outs[kind] = out
    return outs


@pytest.mark.parametrize("kind", KINDS)
def test_scaffold_runs_with_run_local_on_the_host(kind: str, host_outputs: dict[str, Path]) -> None:
    check_outputs(kind, host_outputs[kind])


def test_segmentation_scaffold_segments_as_the_operator_does(host_outputs: dict[str, Path], triton_server,
                                                             tmp_path: Path) -> None:
    """The segmentation skeleton is app/main.py's five steps: the same label maps and volumes on the sample."""
    out = tmp_path / "main"
    proc = run_operator(SAMPLE, out, triton_server.grpc_url, TRITON_MODEL_NAME=triton_server.model_name)
    assert proc.returncode == 0, proc.stdout
    for stem in STEMS:
        ours = host_outputs["segmentation"]
        assert (ours / f"{stem}_seg.nii.gz").read_bytes() == (out / f"{stem}_seg.nii.gz").read_bytes()
        mine, theirs = (json.loads((d / f"{stem}.json").read_text()) for d in (ours, out))
        for key in ("shape", "spacing_mm", "orientation", "liver_volume_ml", "lesion_volume_ml", "labels"):
            assert mine[key] == theirs[key], key


@pytest.mark.parametrize("kind", KINDS)
def test_scaffold_pipeline_validates_and_runs(kind: str, repo: Path, triton_server, tmp_path: Path) -> None:
    name = name_of(kind)
    pipeline = f"def/{name}-pipeline.yml"
    text = (repo / pipeline).read_text()
    assert f'command: ["python", "-u", "-m", "app.{name}"]' in text and f"image: {IMAGE}" in text
    assert ("TRITON_MODEL_NAME: segmentation_liver_v1" in text) == (kind != "passthrough")
    ok(make(repo, "validate", PIPELINE=pipeline))
    rendered = ok(make(repo, "deploy", PIPELINE=pipeline, PLATFORM="kubernetes", DRY_RUN="1",
                       MANIFESTS_DIR=str(tmp_path / "manifests")))
    assert "DRY_RUN=1: nothing was run" in rendered.stderr, output_of(rendered)
    workflow = (tmp_path / "manifests" / "40-workflow.yaml").read_text()
    assert f"app.{name}" in workflow and f"{IMAGE}:{TAG}" in workflow, workflow
    out = tmp_path / "out"
    env = {"NVIDIA_TRITON_GRPCURI": triton_server.grpc_url, "ODK_RUN_DIR": str(tmp_path / "run")}
    ok(make(repo, "run-pipeline", env=env, PIPELINE=pipeline, RUNTIME="host", IMAGE=IMAGE, INPUT_DIR=str(SAMPLE),
            OUTPUT_DIR=str(out)))
    check_outputs(kind, out / name.replace("_", "-") / "results")


def test_generated_tests_pass(repo: Path) -> None:
    """The scaffolds' own tests (the template of an operator's tests) pass in the copy, with its own Triton."""
    tests = [f"tests/test_operator_{name_of(kind)}.py" for kind in KINDS]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVIDIA_", "TRITON_", "ODK_"))}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "6 passed" in proc.stdout, proc.stdout[-3000:]


def test_new_user_edits_one_file(repo: Path, run_dir: Path, host_outputs: dict[str, Path], tmp_path: Path) -> None:
    """`make new-operator`, then a z-score pre-processing and a report field, in the operator's one file only:
    the report has the field and the label map is the z-scored model input's, not the HU window's."""
    before = tree(repo)
    ok(make(repo, "new-operator", NAME="zscored", IMAGE=IMAGE, TAG=TAG))
    made = sorted(set(tree(repo)) - set(before))
    assert made == ["app/zscored.py", "def/zscored-pipeline.yml", "env/zscored.list",
                    "tests/test_operator_zscored.py"], made
    source = repo / "app" / "zscored.py"
    text = source.read_text()
    edits = {
        "    return odk.hu_window(grid, *model.hu_window), geom\n": "    return odk.zscore(grid), geom\n",
        '    """The report (<stem>.json): the class volumes of odk.LabelMapResult; add your own fields here."""\n':
            '    """The report (<stem>.json): the class volumes of odk.LabelMapResult and the pre-processing."""\n\n'
            '    preprocessing: str = "zscore"\n',
    }
    for old, new in edits.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    source.write_text(text)
    try:
        out = tmp_path / "out"
        ok(make(repo, "run-local", env={"ODK_RUN_DIR": str(run_dir)}, RUNTIME="host", OPERATOR="zscored",
                INPUT_DIR=str(SAMPLE), OUTPUT_DIR=str(out)))
        for stem in STEMS:
            report = json.loads((out / f"{stem}.json").read_text())
            keys = list(report)
            assert report["preprocessing"] == "zscore", report
            assert keys.index("preprocessing") > keys.index("orientation"), keys
            edited = np.asanyarray(nib.load(out / f"{stem}_seg.nii.gz").dataobj)
            pristine = np.asanyarray(nib.load(host_outputs["segmentation"] / f"{stem}_seg.nii.gz").dataobj)
            assert edited.shape == pristine.shape
            assert not np.array_equal(edited, pristine), "the z-score pre-processing changed nothing"
    finally:
        for rel in made:
            (repo / rel).unlink()


@pytest.mark.parametrize("name", ["Liver", "1st", "lesion-check", "class", "match", "main", "dicom", "export",
                                  "units", "", "sc_segmentation"])
def test_bad_or_taken_names_are_refused(name: str, repo: Path) -> None:
    """One line, exit non-zero, nothing written; `units` is taken by tests/test_operator_units.py."""
    before = tree(repo)
    line = one_error_line(make(repo, "new-operator", NAME=name))
    assert "NAME" in line or "exists" in line, line
    assert tree(repo) == before


def test_bad_kind_is_refused(repo: Path) -> None:
    before = tree(repo)
    line = one_error_line(make(repo, "new-operator", NAME="fresh", KIND="detection"))
    assert "KIND='detection'" in line, line
    assert tree(repo) == before


@pytest.fixture(scope="module")
def scaffold_image(engine: str, repo: Path) -> Iterator[str]:
    """`make build` of the copy: the operator image with the three scaffolds in app/."""
    ok(make(repo, "build", IMAGE=IMAGE, TAG=TAG, timeout=1200))
    yield f"{IMAGE}:{TAG}"


@pytest.mark.container
@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_scaffold_runs_in_the_image(kind: str, scaffold_image: str, repo: Path, run_dir: Path, triton_server,
                                    host_outputs: dict[str, Path], tmp_path: Path) -> None:
    """`make run-local RUNTIME=container OPERATOR=<name>` and `make run-pipeline RUNTIME=container`: the same
    results as on the host."""
    name = name_of(kind)
    out = tmp_path / "run-local"
    result = ok(make(repo, "run-local", env={"ODK_RUN_DIR": str(run_dir)}, RUNTIME="container", OPERATOR=name,
                     IMAGE=IMAGE, TAG=TAG, INPUT_DIR=str(SAMPLE), OUTPUT_DIR=str(out)))
    assert f"python -u -m app.{name}" in result.stderr, output_of(result)
    pipe_out = tmp_path / "pipeline"
    env = {"NVIDIA_TRITON_GRPCURI": triton_server.grpc_url, "ODK_RUN_DIR": str(tmp_path / "run")}
    ok(make(repo, "run-pipeline", env=env, PIPELINE=f"def/{name}-pipeline.yml", RUNTIME="container", IMAGE=IMAGE,
            INPUT_DIR=str(SAMPLE), OUTPUT_DIR=str(pipe_out)))
    host = check_outputs(kind, host_outputs[kind])
    for folder in (out, pipe_out / name.replace("_", "-") / "results"):
        reports = check_outputs(kind, folder)
        for stem, report in reports.items():
            for key in [k for k in report if k not in ("input", "timings_s", "transport")]:
                assert report[key] == host[stem][key], f"{folder}: {stem} {key}"
            if kind == "segmentation":
                assert (folder / f"{stem}_seg.nii.gz").read_bytes() == \
                    (host_outputs[kind] / f"{stem}_seg.nii.gz").read_bytes()
