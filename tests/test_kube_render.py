"""The Kubernetes bundle: golden files for def/ and the validator's good fixtures, what cannot be expressed
refused with one line, and mutated manifests caught by the validation (schemas, hera's models, the lint).

Regenerate the golden files after an intended change: ODK_UPDATE_GOLDEN=1 .venv/bin/python -m pytest
tests/test_kube_render.py (then review the diff of tests/data/kube/)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from container_helpers import ROOT, check, make, one_error_line

from kit.deploy import render
from kit.deploy.check import check_files, check_object
from kit.deploy.settings import KubeSettings
from kit.pipeline import rules
from kit.pipeline.model import PipelineError, load_pipeline

GOLDEN = ROOT / "tests" / "data" / "kube"
PIPELINES = sorted([*(ROOT / "def").glob("*.yml"), *(ROOT / "tests/data/pipelines/valid").glob("*.yml")])
UPDATE = os.environ.get("ODK_UPDATE_GOLDEN") == "1"
VERSION = KubeSettings().kube_version


def rendered(path: Path) -> dict[str, str]:
    """{filename: text} of the bundle with default settings, or {"refused.txt": the one line}."""
    try:
        b = render.bundle(load_pipeline(path.relative_to(ROOT)), KubeSettings())
    except PipelineError as exc:
        return {"refused.txt": f"{exc}\n"}
    return {mf.filename: render.text(mf) for mf in b.manifests}


@pytest.mark.parametrize("path", PIPELINES, ids=[p.stem for p in PIPELINES])
def test_bundle_matches_golden(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    files = rendered(path)
    folder = GOLDEN / path.stem
    if UPDATE:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
    assert folder.is_dir(), f"no golden files for {path.name}: run with ODK_UPDATE_GOLDEN=1"
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    for name, text in files.items():
        assert text == (folder / name).read_text(encoding="utf-8"), f"{path.name}: {name} differs from the golden file"


RENDERED = [p for p in PIPELINES if (GOLDEN / p.stem / render.WORKFLOW_FILE).is_file()]


@pytest.mark.parametrize("path", RENDERED, ids=[p.stem for p in RENDERED])
def test_golden_bundles_validate(path: Path) -> None:
    files = sorted((GOLDEN / path.stem).glob("*.yaml"))
    assert [str(f) for f in check_files(files, VERSION)] == []


def test_every_api_version_renders() -> None:
    """Each minor version the validator accepts (rules.OLDEST to rules.NEWEST_MINOR) has a fixture that renders
    to a full bundle (a Workflow, not a refusal)."""
    accepted = {f"0.{minor}" for minor in range(rules.OLDEST[1], rules.NEWEST_MINOR[1] + 1)}
    assert accepted == {"0.3", "0.4", "0.5", "0.6", "0.7", "0.8"}
    rendered_minors = {load_pipeline(p).api_version.rsplit(".", 1)[0] for p in RENDERED}
    assert accepted <= rendered_minors, f"no rendered fixture for api-version {sorted(accepted - rendered_minors)}"


def test_models_and_a_gpu_request_of_0_7() -> None:
    """0.7.2: the operator that names a model gets Triton's address and its GPU; Triton serves that model on a GPU."""
    wf = render.load(GOLDEN / "v072-models-gpu" / render.WORKFLOW_FILE)[0]
    steps = {t["name"]: t["container"] for t in wf["spec"]["templates"] if "container" in t}
    env = {name: {e["name"]: e["value"] for e in c["env"]} for name, c in steps.items()}
    assert env["liver-tumor"]["NVIDIA_TRITON_GRPCURI"] == "triton.odk.svc:8001"
    assert not any("NVIDIA_TRITON_GRPCURI" in env[name] for name in ("dicom-reader", "dicom-writer"))
    assert steps["liver-tumor"]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    triton_objects = render.load(GOLDEN / "v072-models-gpu" / render.TRITON_FILE)
    server = next(o for o in triton_objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert server["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    b = render.bundle(load_pipeline(ROOT / "tests/data/pipelines/valid/v072-models-gpu.yml"), KubeSettings())
    assert b.triton is not None and list(b.triton.models) == ["segmentation_liver_v1"]  # what make deploy copies


def test_in_memory_entries_are_refused_with_one_line() -> None:
    refused = (GOLDEN / "v050-typed-io" / "refused.txt").read_text().splitlines()
    assert refused == ["operator 'producer': array output 'volume' has no path (Clara passes it in memory); "
                       "Kubernetes pods only share folders, so give it a path and type stream"]


def test_a_service_that_is_not_triton_is_refused(tmp_path: Path) -> None:
    text = (ROOT / "def/one-operator-pipeline.yml").read_text().replace("nvcr.io/nvidia/tritonserver", "redis")
    text = text.replace("- name: triton\n", "- name: cache\n")
    (tmp_path / "p.yml").write_text(text)
    with pytest.raises(PipelineError, match="service 'cache' \\(redis\\) is not Triton"):
        render.bundle(load_pipeline(tmp_path / "p.yml"), KubeSettings())


def test_wiring_and_triton_in_the_two_operator_workflow() -> None:
    wf = yaml.safe_load_all((GOLDEN / "two-operator-pipeline" / render.WORKFLOW_FILE).read_text())
    spec = next(iter(wf))["spec"]
    seg, export, dag = spec["templates"]
    env = {e["name"]: e["value"] for e in seg["container"]["env"]}
    assert env["NVIDIA_CLARA_INPUTPATHS"] == "payload:/input"
    assert env["NVIDIA_CLARA_OUTPUTPATHS"] == "segmentation/segmentation:/output"
    assert env["NVIDIA_TRITON_GRPCURI"] == "triton.odk.svc:8001"
    assert "NVIDIA_TRITON_GRPCURI" not in {e["name"] for e in export["container"]["env"]}
    mounts = {m["mountPath"]: m["subPath"] for m in export["container"]["volumeMounts"]}
    assert mounts == {"/input": "{{workflow.name}}/segmentation/segmentation",
                      "/output": "{{workflow.name}}/export/summary"}
    assert dag["dag"]["tasks"][1] == {"name": "export", "template": "export", "depends": "segmentation"}
    assert spec["activeDeadlineSeconds"] > 0 and spec["ttlStrategy"] and seg["retryStrategy"]["limit"]


# -- mutated manifests are caught ---------------------------------------------------------------------------
def objects(name: str) -> list[dict[str, Any]]:
    return render.load(GOLDEN / "two-operator-pipeline" / name)


def deployment() -> dict[str, Any]:
    return copy.deepcopy(next(o for o in objects(render.TRITON_FILE) if o["kind"] == "Deployment"))


def workflow() -> dict[str, Any]:
    return copy.deepcopy(objects(render.WORKFLOW_FILE)[0])


def findings(obj: dict[str, Any]) -> list[str]:
    return [str(f) for f in check_object(obj, "30-x.yaml", VERSION)]


def mutate(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Set (or with value None delete) ``a.b[0].c`` in obj."""
    *parents, last = path.replace("]", "").replace("[", ".").split(".")
    node: Any = obj
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is None:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return obj


C = "spec.template.spec.containers.0"
T = "spec.templates.0"
CASES = [
    ("wrong type", deployment, "spec.replicas", "one", "spec.replicas: 'one' is not of type"),
    ("missing image", deployment, f"{C}.image", None, "containers[0].image: no image"),
    ("unknown field", deployment, f"{C}.imagePullPolicyy", "Always", "'imagePullPolicyy' was unexpected"),
    ("bad name", deployment, "metadata.name", "Triton_Server", "metadata.name: 'Triton_Server' is not a DNS-1123"),
    ("selector", deployment, "spec.selector.matchLabels", {"app": "other"}, "selector app=other does not match"),
    ("port", deployment, f"{C}.ports.0.containerPort", 80000, "port 80000 is not an integer 1-65535"),
    ("mount", deployment, f"{C}.volumeMounts.0.name", "model", "mounts volume 'model', which is not declared"),
    ("wf wrong type", workflow, "spec.activeDeadlineSeconds", "soon", "spec.activeDeadlineSeconds: Input should be"),
    ("wf missing image", workflow, f"{T}.container.image", None, "templates[0].container.image: no image"),
    ("wf unknown field", workflow, f"{T}.container.imagePullPolicyy", "x", "unknown field 'imagePullPolicyy'"),
    ("wf bad name", workflow, f"{T}.name", "Seg_1", "templates[0].name: 'Seg_1' is not a DNS-1123 label"),
    ("wf dangling depends", workflow, "spec.templates.2.dag.tasks.1.depends", "segmentaton",
     "depends on 'segmentaton', which is not a task"),
    ("wf entrypoint", workflow, "spec.entrypoint", "main", "entrypoint 'main' names no template"),
    ("wf cycle", workflow, "spec.templates.2.dag.tasks.0.depends", "export", "the DAG has a cycle"),
    ("wf mount", workflow, f"{T}.container.volumeMounts.0.name", "payload", "mounts volume 'payload'"),
]


@pytest.mark.parametrize(("what", "make_obj", "path", "value", "expected"), CASES, ids=[c[0] for c in CASES])
def test_mutated_manifest_is_caught(what: str, make_obj: Any, path: str, value: Any, expected: str) -> None:
    obj = make_obj()
    assert findings(obj) == []
    found = findings(mutate(obj, path, value))
    assert any(expected in f for f in found), found
    assert all(f.startswith(f"30-x.yaml: {obj['kind']}/") for f in found), found  # file, object, then field


def test_unknown_kind_counts_as_failure() -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert any("couldn't find schema" in f for f in findings(obj))


def test_service_selector_must_pick_a_pod(tmp_path: Path) -> None:
    text = (GOLDEN / "two-operator-pipeline" / render.TRITON_FILE).read_text()
    bad = tmp_path / "30-triton.yaml"
    selector = "selector:\n    app.kubernetes.io/name: triton"
    bad.write_text(text.replace(f"{selector}\n", f"{selector}n\n"))
    assert bad.read_text() != text
    found = [str(f) for f in check_files([bad], VERSION)]
    assert any("Service/triton: spec.selector: selects" in f for f in found), found


def test_make_validate_platform_kubernetes(pytestconfig: pytest.Config, tmp_path: Path) -> None:
    env = {"ODK_RUN_DIR": str(tmp_path)}
    out = check(make("validate", pytestconfig, env=env, PLATFORM="kubernetes")).stdout
    assert "def/two-operator-pipeline.yml: ok for Kubernetes" in out
    bad = make("validate", pytestconfig, env=env, PLATFORM="kubernetes",
               PIPELINE="tests/data/pipelines/valid/v050-typed-io.yml")
    assert bad.returncode != 0 and "has no path (Clara passes it in memory)" in bad.stdout
    assert one_error_line(make("validate", PLATFORM="nomad")) == \
        "[odk] error: PLATFORM must be clara or kubernetes, not 'nomad'"


def test_the_callers_dicom_destination_is_rendered_into_the_register_results_step(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch
                                                                                 ) -> None:
    monkeypatch.setenv("DICOM_DESTINATION", "PACS@pacs.hospital.example:104")
    proc = subprocess.run([sys.executable, "-m", "kit.deploy.render", "def/liver-dicom-pipeline.yml",
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    workflow = (tmp_path / "40-workflow.yaml").read_text()
    assert "PACS@pacs.hospital.example:104" in workflow
    golden = (ROOT / "tests" / "data" / "kube" / "liver-dicom-pipeline" / "40-workflow.yaml").read_text()
    assert "PACS@pacs.hospital.example:104" not in golden
