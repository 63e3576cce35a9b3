"""The results viewer's server: what it lists, what it serves, and what it refuses (real HTTP on a free port)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from view_helpers import (
    get_json,
    listener_job,
    request,
    serving,
    summary_table,
    write_classes_report,
    write_ct_and_seg,
    write_report,
)

from kit.view.server import ViewConfig
from odk.overlay import PALETTE


@pytest.fixture()
def folders(tmp_path: Path) -> ViewConfig:
    """OUTPUT_DIR with one viewable study in a sub-folder (report written in a container: /input/...), one label
    map without its report, one report whose CT is gone; INPUT_DIR with their CTs and one study without result."""
    out, inp, run = tmp_path / "output", tmp_path / "input", tmp_path / "run"
    write_ct_and_seg(inp / "sub" / "case1.nii.gz", out / "sub" / "case1_seg.nii.gz")
    write_report(out / "sub", "case1", "/input/sub/case1.nii.gz")
    write_ct_and_seg(inp / "orphan.nii.gz", out / "orphan_seg.nii.gz")
    write_ct_and_seg(None, out / "noct_seg.nii.gz")
    write_report(out, "noct", "/input/noct.nii.gz")
    write_ct_and_seg(inp / "broken.nii.gz", None)
    (run / "pipeline").mkdir(parents=True)
    (run / "pipeline" / "segmentation.log").write_text(
        "2026-12-03 10:00:00,000 ERROR app: FAILED /input/broken.nii.gz: cannot read the NIfTI header\n"
        "2026-12-03 10:00:01,000 INFO clara: stage segmentation: done\n")
    (run / "pipeline" / "export.log").write_text("2026-12-03 10:00:02,000 ERROR clara: no study reports found\n")
    return ViewConfig(output_dir=out, input_dir=inp, run_dir=run)


def by_name(overview: dict) -> dict[str, dict]:
    return {s["name"]: s for s in overview["studies"]}


def test_studies_table_reports_orphans_missing_ct_and_failures(folders: ViewConfig) -> None:
    with serving(folders) as port:
        studies = by_name(get_json(port, "/api/overview"))
        case = studies["case1"]
        assert case["status"] == "ok" and case["viewable"] and case["folder"] == "sub"
        assert (case["shape"], case["spacing_mm"], case["volumes_ml"]) == (
            [24, 20, 8], [2.0, 2.0, 3.0], {"liver": 123.4, "lesion": 5.6})
        assert case["model"] == "segmentation_liver_v1 v1" and case["transport"] == "grpc"
        assert [(lb["value"], lb["name"]) for lb in case["labels"]] == [(0, "background"), (1, "liver"), (2, "lesion")]
        # One volume per class, as the operator defines it: the liver's (label_nesting organ) includes its lesions,
        # in the table and in the legend alike; the voxels of label 1 alone (118.0 mL) are not shown.
        assert [(lb["volume_ml"], lb["includes"]) for lb in case["labels"][1:]] == [(123.4, ["lesion"]), (5.6, [])]
        # Liver green, lesion red, as the operator's QA overlay draws them (app/overlay.py).
        assert [lb["colour"] for lb in case["labels"][1:]] == [[40, 200, 70], [235, 40, 40]]
        # The CT came from INPUT_DIR by the report's relative path, and is served byte for byte.
        status, headers, body = request(port, "GET", case["ct_url"])
        assert status == 200 and body == (folders.input_dir / "sub" / "case1.nii.gz").read_bytes()
        assert headers["content-type"] == "application/octet-stream"
        status, _, body = request(port, "GET", case["seg_url"])
        assert status == 200 and gzip.decompress(body)[:4] == (348).to_bytes(4, "little")

        assert studies["orphan"]["status"] == "incomplete"
        assert "label map without its report" in studies["orphan"]["reason"] and studies["orphan"]["viewable"]
        noct = studies["noct"]
        assert not noct["viewable"] and noct["ct_url"] is None
        assert noct["ct_problem"].startswith("label map without its CT: no noct.nii.gz")
        broken = studies["broken"]
        assert broken["status"] == "failed" and broken["reason"] == "cannot read the NIfTI header"
        status, _, body = request(port, "GET", "/ct?source=out&id=noct.json")
        assert status == 404 and b"label map without its CT" in body


def test_pipeline_run_operators_and_logs(folders: ViewConfig) -> None:
    with serving(folders) as port:
        runs = get_json(port, "/api/overview")["runs"]
        assert [r["kind"] for r in runs] == ["pipeline"]
        ops = {o["name"]: o for o in runs[0]["operators"]}
        assert ops["segmentation"]["status"] == "ok" and ops["export"]["status"] == "failed"
        assert "no study reports found" in ops["export"]["detail"] and runs[0]["state"] == "failed"
        status, _, body = request(port, "GET", ops["export"]["log_url"])
        assert status == 200 and b"no study reports found" in body


def test_listener_jobs_one_row_each_with_operators_and_their_studies(folders: ViewConfig) -> None:
    jobs = folders.run_dir / "listen" / "jobs"
    ops = [("dicom-to-nifti", "ok", 2.0, "out"), ("segmentation", "ok", 11.5, "out"), ("dicom-seg", "ok", 1.0, "")]
    listener_job(jobs, "job-ok", "succeeded", ops=ops, study="CT_1")
    listener_job(jobs, "job-bad", "failed", reason="segmentation failed (exit 1)",
                 ops=[("dicom-to-nifti", "ok", 2.0, ""), ("segmentation", "failed", 3.0, "exit 1: no model"),
                      ("dicom-seg", "skipped", 0.0, "'segmentation' failed")])
    listener_job(jobs, "job-new", "receiving")
    with serving(folders) as port:
        runs = {r["name"]: r for r in get_json(port, "/api/overview")["runs"] if r["kind"] == "listener"}
        assert set(runs) == {"job-ok", "job-bad", "job-new"}
        assert runs["job-ok"]["state"] == "succeeded"
        assert [(o["name"], o["status"], o["seconds"]) for o in runs["job-ok"]["operators"]] == [
            (n, s, t) for n, s, t, _ in ops]
        bad = runs["job-bad"]
        assert bad["info"]["reason"] == "segmentation failed (exit 1)" and bad["info"]["calling_aet"] == "PACS"
        assert [(o["name"], o["status"]) for o in bad["operators"]] == [
            ("dicom-to-nifti", "ok"), ("segmentation", "failed"), ("dicom-seg", "skipped")]
        assert bad["operators"][1]["detail"] == "exit 1: no model"
        status, _, body = request(port, "GET", bad["operators"][1]["log_url"])
        assert status == 200 and body == b"ERROR app: boom\n"
        status, _, body = request(port, "GET", bad["log_url"])
        assert status == 200 and b"exit 1: no model" in body
        assert runs["job-new"]["state"] == "receiving" and runs["job-new"]["info"]["started_at"] is None

        # The job's own results page: its studies, the CT found among the job's converted NIfTI files.
        job = get_json(port, runs["job-ok"]["results_url"].replace("/?", "/api/overview?"))
        (study,) = job["studies"]
        assert study["name"] == "CT_1" and study["viewable"] and study["folder"] == "segmentation/segmentation"
        status, _, body = request(port, "GET", study["ct_url"])
        assert status == 200 and body[:2] == b"\x1f\x8b"
        for bad_source in ("job:..", "job:../listen", "job:", "job:job-ok/output", "nope"):
            assert request(port, "GET", f"/api/overview?source={bad_source}")[0] == 404, bad_source


def test_summary_table_of_a_log_is_read_back() -> None:
    from kit.view.runs import summary_table as parse

    text = "[segmentation] done\n" + summary_table([("a", "ok", 1.0, "x"), ("b", "failed", 2.5, "exit 3: y")])
    assert [(o.name, o.status, o.seconds, o.detail) for o in parse(text)] == [
        ("a", "ok", 1.0, "x"), ("b", "failed", 2.5, "exit 3: y")]


ESCAPES = [
    "/files/../../../etc/passwd", "/files/%2e%2e/%2e%2e/etc/passwd", "/files/sub/../../input/sub/case1.nii.gz",
    "/files//etc/passwd", "/files/%2Fetc%2Fpasswd", "/files/sub/%2e%2e%2f%2e%2e%2fsecret.txt", "/files/sub\\..\\x",
    "/static/../server.py", "/static/%2e%2e/server.py", "/static//etc/passwd",
    "/logs/../../secret.log", "/logs/%2e%2e/secret.log", "/files/link-out.txt", "/files/dir-out/secret.txt",
    "/files/./sub/case1.json",
]


def test_paths_outside_the_folder_are_refused(folders: ViewConfig, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the browser")
    (tmp_path / "secret.log").write_text("not for the browser")
    (folders.output_dir / "link-out.txt").symlink_to(secret)
    (folders.output_dir / "dir-out").symlink_to(tmp_path)
    (folders.output_dir / "link-in.json").symlink_to(folders.output_dir / "sub" / "case1.json")
    with serving(folders) as port:
        for target in ESCAPES:
            status, _, body = request(port, "GET", target)
            assert status == 403, (target, status, body)
            assert b"not for the browser" not in body
        assert request(port, "GET", f"/files/{tmp_path}/secret.txt")[0] == 403  # an absolute path
        assert request(port, "GET", "/files/link-in.json")[0] == 200  # a symlink that stays inside is fine
        assert request(port, "GET", "/files/sub/case1.json")[0] == 200
        assert request(port, "GET", "/files/missing.json")[0] == 404
        # Studies and CTs are looked up by id, never opened by a path from the request.
        assert request(port, "GET", "/ct?source=out&id=../secret.txt")[0] == 404
        assert request(port, "GET", f"/ct?source=out&id={secret}")[0] == 404


def test_a_ct_that_links_out_of_the_input_folder_is_not_served(folders: ViewConfig, tmp_path: Path) -> None:
    """Every CT goes through the one inside-the-folder rule, that of the files served: an input that is a symbolic
    link out of INPUT_DIR (to a secret or to a real CT) is refused, as the operator refuses it, and its study says
    why; a link to a CT inside INPUT_DIR is that CT."""
    inp = folders.input_dir
    assert inp is not None
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the browser")
    elsewhere = tmp_path / "elsewhere"
    write_ct_and_seg(elsewhere / "real.nii.gz", None)
    (inp / "evil.nii.gz").symlink_to(secret)
    (inp / "sub" / "far.nii.gz").symlink_to(elsewhere / "real.nii.gz")
    (inp / "again.nii.gz").symlink_to(inp / "sub" / "case1.nii.gz")
    # A study whose report names a CT that is now a link out of the input folder.
    write_ct_and_seg(None, folders.output_dir / "linked_seg.nii.gz")
    write_report(folders.output_dir, "linked", "/input/linked.nii.gz")
    (inp / "linked.nii.gz").symlink_to(elsewhere / "real.nii.gz")
    link_out = "is a symbolic link out of the input folder"
    with serving(folders) as port:
        studies = by_name(get_json(port, "/api/overview"))
        for name in ("evil", "far"):
            study = studies[name]
            assert study["status"] == "failed" and study["ct_url"] is None and not study["viewable"], study
            assert study["reason"] == study["ct_problem"] == (
                f"the CT {name}.nii.gz {link_out} {inp}: not shown (the operator does not read such a link either)")
            status, _, body = request(port, "GET", f"/ct?source=out&id=input/{name}")
            assert status == 404 and link_out.encode() in body and b"not for the browser" not in body
            assert body != (elsewhere / "real.nii.gz").read_bytes()
        linked = studies["linked"]
        assert linked["status"] == "ok" and not linked["viewable"] and linked["ct_url"] is None
        assert linked["ct_problem"].startswith(f"the CT linked.nii.gz {link_out}")
        assert request(port, "GET", "/ct?source=out&id=linked.json")[0] == 404
        # A link inside the folder to a study's CT is that study (the operator processes the file once).
        assert "again" not in studies
        # A failed input inside the folder still shows its CT.
        status, _, body = request(port, "GET", studies["broken"]["ct_url"])
        assert status == 200 and body == (inp / "broken.nii.gz").read_bytes()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "BREW"])
def test_only_get_is_served(folders: ViewConfig, method: str) -> None:
    report = folders.output_dir / "sub" / "case1.json"
    before = report.read_bytes()
    with serving(folders) as port:
        status, headers, _ = request(port, method, "/files/sub/case1.json", body=b"{}")
        assert status == 405 and headers["allow"] == "GET"
        assert request(port, "GET", "/files/sub/case1.json")[0] == 200  # the server still answers
    assert report.read_bytes() == before


def test_empty_results_folder_says_so_on_the_page(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    cfg = ViewConfig(output_dir=tmp_path / "out", input_dir=tmp_path / "nowhere", run_dir=tmp_path / "run")
    with serving(cfg) as port:
        data = get_json(port, "/api/overview")
        assert data["studies"] == [] and data["runs"] == []
        assert data["problems"][0].startswith(f"No results in {tmp_path / 'out'}: no study report")
        assert "does not exist, so no CT can be shown: set INPUT_DIR" in data["problems"][1]
        status, headers, body = request(port, "GET", "/")
        assert status == 200 and b"/static/index.js" in body
        assert "default-src 'self'" in headers["content-security-policy"]


def test_a_model_with_other_classes_is_listed_with_its_volumes(tmp_path: Path) -> None:
    out, inp = tmp_path / "output", tmp_path / "input"
    write_ct_and_seg(inp / "abd.nii.gz", out / "abd_seg.nii.gz")
    names = ["spleen", "cyst", "kidney"]
    write_classes_report(out, "abd", "/input/abd.nii.gz", {n: 10.0 * i for i, n in enumerate(names, start=1)})
    with serving(ViewConfig(output_dir=out, input_dir=inp, run_dir=tmp_path / "run")) as port:
        study = by_name(get_json(port, "/api/overview"))["abd"]
        assert study["status"] == "ok" and study["viewable"]
        assert list(study["volumes_ml"].items()) == [("spleen", 10.0), ("cyst", 20.0), ("kidney", 30.0)]
        fg = [lb for lb in study["labels"] if lb["value"]]
        assert [lb["name"] for lb in fg] == names
        assert [(lb["volume_ml"], lb["includes"]) for lb in fg] == [(10.0, []), (20.0, []), (30.0, [])]
        # The colours of the operator's QA overlay, class by class: one palette for both pictures.
        assert [lb["colour"] for lb in fg] == [list(PALETTE[0]), list(PALETTE[1]), list(PALETTE[2])]
        assert not any("liver" in key or "lesion" in key for key in study)


def test_a_report_without_its_labels_gives_its_classes_by_its_volume_keys(tmp_path: Path) -> None:
    out = tmp_path / "output"
    write_ct_and_seg(None, out / "old_seg.nii.gz")
    path = write_report(out, "old", "/input/old.nii.gz")
    report = json.loads(path.read_text())
    del report["labels"], report["liver_volume_ml"], report["lesion_volume_ml"]
    report |= {"spleen_volume_ml": 7.5, "kidney_volume_ml": 2.5}
    path.write_text(json.dumps(report))
    with serving(ViewConfig(output_dir=out, input_dir=tmp_path / "input", run_dir=tmp_path / "run")) as port:
        study = by_name(get_json(port, "/api/overview"))["old"]
        assert study["volumes_ml"] == {"spleen": 7.5, "kidney": 2.5}
        labels = [(lb["value"], lb["name"]) for lb in study["labels"]]
        assert labels == [(0, "background"), (1, "spleen"), (2, "kidney")]
