"""The rendered specs as the Pods `podman kube play` gets (kit.deploy.podspec): one hostPath per mount, Triton
on loopback ports, the Triton address rewritten, nothing else of the container spec changed."""

from __future__ import annotations

from pathlib import Path

from container_helpers import ROOT

from kit.deploy import podspec, render

GOLDEN = ROOT / "tests" / "data" / "kube" / "two-operator-pipeline"


def templates() -> dict[str, dict]:
    wf = render.load(GOLDEN / render.WORKFLOW_FILE)[0]
    return {t["name"]: t for t in wf["spec"]["templates"]}


def test_operator_pod_mounts_each_folder_and_points_at_local_triton(tmp_path: Path) -> None:
    template = templates()["export"]
    values = {podspec.RUN: "run-1", "{{workflow.uid}}": "uid-1", podspec.PAYLOAD: str(tmp_path / "in")}
    pod, outputs = podspec.operator_pod(template, "export-x", tmp_path / "in", tmp_path / "out", "run-1", values,
                                        "odk", "127.0.0.1:9001", "127.0.0.1:9000", (1000, 1000))
    spec = pod["spec"]
    assert spec["hostNetwork"] is True and spec["restartPolicy"] == "Never"
    assert spec["volumes"] == [
        {"name": "mount-0", "hostPath": {"path": str(tmp_path / "out/segmentation/segmentation"), "type": "Directory"}},
        {"name": "mount-1", "hostPath": {"path": str(tmp_path / "out/export/summary"), "type": "Directory"}},
    ]
    assert outputs == [tmp_path / "out/export/summary"]
    c = spec["containers"][0]
    original = template["container"]
    assert (c["image"], c["args"]) == (original["image"], original["args"])
    assert [m["mountPath"] for m in c["volumeMounts"]] == ["/input", "/output"]
    assert "subPath" not in str(c["volumeMounts"]) and c["volumeMounts"][0]["readOnly"] is True
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["NVIDIA_CLARA_INPUTPATHS"] == "segmentation/segmentation:/input"
    assert env["NVIDIA_CLARA_JOBNAME"] == "run-1" and env["NVIDIA_CLARA_JOBID"] == "uid-1"


def test_segmentation_gets_the_loopback_triton_and_the_payload() -> None:
    template = templates()["segmentation"]
    values = {podspec.RUN: "r", "{{workflow.uid}}": "u", podspec.PAYLOAD: "/data/in"}
    pod, _ = podspec.operator_pod(template, "seg-x", Path("/data/in"), Path("/data/out"), "r", values, "odk",
                                  "127.0.0.1:9001", "127.0.0.1:9000", None)
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["NVIDIA_TRITON_GRPCURI"] == "127.0.0.1:9001" and env["NVIDIA_TRITON_HTTPURI"] == "127.0.0.1:9000"
    assert pod["spec"]["volumes"][0]["hostPath"]["path"] == "/data/in"
    assert "securityContext" not in pod["spec"]


def test_triton_pod_publishes_on_loopback_only(tmp_path: Path) -> None:
    deployment = next(o for o in render.load(GOLDEN / render.TRITON_FILE) if o["kind"] == "Deployment")
    pod = podspec.triton_pod(deployment, "triton-x", tmp_path / "models", {"http": 1, "grpc": 2, "metrics": 3},
                             tmp_path / "shm")
    c = pod["spec"]["containers"][0]
    assert [(p["containerPort"], p["hostPort"], p["hostIP"]) for p in c["ports"]] == \
        [(8000, 1, "127.0.0.1"), (8001, 2, "127.0.0.1"), (8002, 3, "127.0.0.1")]
    assert c["args"] == ["tritonserver", "--model-repository=/models"]
    assert not {"startupProbe", "readinessProbe", "livenessProbe", "resources"} & set(c)
    assert {v["name"]: v["hostPath"]["path"] for v in pod["spec"]["volumes"]} == \
        {"models": str(tmp_path / "models"), "dshm": str(tmp_path / "shm" / "dshm")}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
