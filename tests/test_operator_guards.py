"""Hostile inputs and settings against the real operator and Triton: refused with one line, never a
silently wrong result, never a file of the user's overwritten, memory bounded."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from isal import igzip
from operator_helpers import (
    ROOT,
    ct_volume,
    error_lines,
    leftovers,
    run_operator,
    run_operator_measured,
    write_ct,
)

SMALL = (64, 64, 24)
GB = 1024**3


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _failed(log: str, name: str) -> list[str]:
    return [ln for ln in log.splitlines() if "FAILED" in ln and name in ln]


def test_non_finite_voxel_refuses_the_study_and_names_it(triton_server, tmp_path):
    data = ct_volume(SMALL).astype(np.float32)
    data[10, 20, 5] = np.nan
    (tmp_path / "in").mkdir()
    write_ct(tmp_path / "in" / "nan.nii.gz", data)
    write_ct(tmp_path / "in" / "good.nii.gz", ct_volume(SMALL))
    proc = run_operator(tmp_path / "in", tmp_path / "out", triton_server.grpc_url)
    log = proc.stdout
    assert proc.returncode == 1, log
    lines = _failed(log, "nan.nii.gz")
    assert len(lines) == 1 and "1 non-finite voxel(s) (NaN or Inf), the first at index (10, 20, 5)" in lines[0], log
    assert not list((tmp_path / "out").glob("nan*"))
    assert (tmp_path / "out" / "good.json").is_file()


@pytest.mark.parametrize(("name", "value"), [
    ("ODK_HU_WINDOW", "nan,nan"), ("ODK_SPACING_MM", "inf,inf,inf"), ("TRITON_REQUEST_TIMEOUT", "inf"),
    ("TRITON_READY_TIMEOUT", "nan"), ("ODK_OVERLAP", "nan"), ("ODK_SPACING_MM", "nan,1,1"),
    ("TRITON_RETRIES", "1e9"), ("ODK_MAX_VOXELS", "0"),
])
def test_non_finite_or_out_of_range_settings_are_refused_at_start(triton_server, tmp_path, name, value):
    (tmp_path / "in").mkdir()
    write_ct(tmp_path / "in" / "a.nii.gz", ct_volume(SMALL))
    proc = run_operator(tmp_path / "in", tmp_path / "out", triton_server.grpc_url, **{name: value})
    errors = error_lines(proc.stdout)
    assert proc.returncode == 1 and len(errors) == 1 and f"{name}=" in errors[0], proc.stdout
    assert "model segmentation" not in proc.stdout  # refused before any request
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def _gzip_bomb(path: Path, shape=(1024, 1024, 1024), trailing: int = 0) -> None:
    """A .nii.gz of int16 zeros: the voxels its header describes, then ``trailing`` more bytes of zeros that no
    header field mentions (2 GiB of voxels in about 2 MB), written without holding them."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.int16)
    hdr.set_zooms((1.0, 1.0, 1.0))
    hdr.set_qform(np.eye(4), code=1)
    hdr.set_sform(np.eye(4), code=1)
    hdr["vox_offset"] = 352
    left = int(np.prod(shape)) * 2 + trailing
    chunk = bytes(64 * 1024 * 1024)
    with igzip.open(path, "wb", compresslevel=3) as fh:
        fh.write(hdr.binaryblock + bytes(4))
        while left:
            left -= fh.write(chunk[:left])


def test_gzip_bomb_is_refused_from_its_header_with_memory_bounded(triton_server, tmp_path):
    (tmp_path / "in").mkdir()
    _gzip_bomb(tmp_path / "in" / "bomb.nii.gz")
    assert (tmp_path / "in" / "bomb.nii.gz").stat().st_size < 20 * 1024 * 1024
    write_ct(tmp_path / "in" / "good.nii.gz", ct_volume(SMALL))
    code, log, peak = run_operator_measured(tmp_path / "in", tmp_path / "out", triton_server.grpc_url)
    assert code == 1, log
    lines = _failed(log, "bomb.nii.gz")
    assert len(lines) == 1 and "1073741824" in lines[0].replace(",", "") and "ODK_MAX_VOXELS" in lines[0], log
    assert (tmp_path / "out" / "good.json").is_file(), log
    assert peak < 0.5 * GB, f"peak RSS {peak / GB:.2f} GB"  # reading it took 4.4 GB; refused: about 70 MB


def test_gzip_bomb_behind_a_small_header_is_refused_with_memory_bounded(triton_server, tmp_path):
    (tmp_path / "in").mkdir()
    _gzip_bomb(tmp_path / "in" / "bomb.nii.gz", shape=(8, 8, 8), trailing=384 * 1024 * 1024)
    assert (tmp_path / "in" / "bomb.nii.gz").stat().st_size < 5 * 1024 * 1024
    write_ct(tmp_path / "in" / "good.nii.gz", ct_volume(SMALL))
    code, log, peak = run_operator_measured(tmp_path / "in", tmp_path / "out", triton_server.grpc_url)
    assert code == 1, log
    lines = _failed(log, "bomb.nii.gz")
    assert len(lines) == 1 and "holds more data than its header describes" in lines[0], log
    assert "8x8x8 int16 voxels end at byte 1,376" in lines[0], log
    assert not list((tmp_path / "out").glob("bomb*")), log
    assert (tmp_path / "out" / "good.json").is_file(), log
    assert peak < 0.4 * GB, f"peak RSS {peak / GB:.2f} GB"  # decompressing it all took 833 MB; refused: about 70 MB


def test_tiny_model_spacing_is_refused_before_allocating(triton_server, tmp_path):
    (tmp_path / "in").mkdir()
    write_ct(tmp_path / "in" / "a.nii.gz", ct_volume(SMALL))
    code, log, peak = run_operator_measured(tmp_path / "in", tmp_path / "out", triton_server.grpc_url,
                                            ODK_SPACING_MM="0.01,0.01,0.01")
    assert code == 1, log
    lines = _failed(log, "a.nii.gz")
    assert len(lines) == 1 and "processing needs about" in lines[0] and "ODK_MAX_MEMORY_MB" in lines[0], log
    assert peak < 0.5 * GB, f"peak RSS {peak / GB:.2f} GB"  # it reached 7.7 GB; refused: about 75 MB


def test_the_voxel_limit_can_be_raised_or_lowered(triton_server, tmp_path):
    (tmp_path / "in").mkdir()
    write_ct(tmp_path / "in" / "a.nii.gz", ct_volume(SMALL))
    proc = run_operator(tmp_path / "in", tmp_path / "out", triton_server.grpc_url, ODK_MAX_VOXELS="1000")
    assert proc.returncode == 1 and "ODK_MAX_VOXELS=1,000" in proc.stdout, proc.stdout


def test_volumes_that_are_not_ct_get_a_warning_in_the_report(triton_server, tmp_path):
    (tmp_path / "in").mkdir()
    unsigned = (ct_volume(SMALL).astype(np.int32) + 1024).clip(0, 4095).astype(np.uint16)
    write_ct(tmp_path / "in" / "unsigned.nii.gz", unsigned)
    write_ct(tmp_path / "in" / "constant.nii.gz", np.full(SMALL, 50, dtype=np.int16))
    proc = run_operator(tmp_path / "in", tmp_path / "out", triton_server.grpc_url)
    assert proc.returncode == 0, proc.stdout
    unsigned_report = json.loads((tmp_path / "out" / "unsigned.json").read_text())
    assert any("not Hounsfield units" in w for w in unsigned_report["warnings"]), unsigned_report["warnings"]
    constant_report = json.loads((tmp_path / "out" / "constant.json").read_text())
    assert any("every voxel is 50" in w for w in constant_report["warnings"]), constant_report["warnings"]
    warned = [ln for ln in proc.stdout.splitlines() if " WARNING " in ln]
    assert any("unsigned.nii.gz" in ln and "Hounsfield" in ln for ln in warned), proc.stdout


def test_plausible_ct_has_no_ct_warning(triton_server, tmp_path):
    (tmp_path / "in").mkdir()
    write_ct(tmp_path / "in" / "a.nii.gz", ct_volume(SMALL))
    assert run_operator(tmp_path / "in", tmp_path / "out", triton_server.grpc_url).returncode == 0
    warnings = json.loads((tmp_path / "out" / "a.json").read_text())["warnings"]
    assert not [w for w in warnings if "Hounsfield" in w or "every voxel" in w], warnings


def test_a_study_without_a_liver_gets_the_organ_warning_in_its_report(triton_server, tmp_path):
    """Air with scanner noise: a CT in Hounsfield units (no CT warning), but nothing a model takes for a liver
    (below the model's window it is all zeros, so also the tiny test model finds only background)."""
    (tmp_path / "in").mkdir()
    air = np.random.default_rng(0).normal(-1000, 10, SMALL).astype(np.int16)
    write_ct(tmp_path / "in" / "air.nii.gz", air)
    proc = run_operator(tmp_path / "in", tmp_path / "out", triton_server.grpc_url)
    assert proc.returncode == 0, proc.stdout
    report = json.loads((tmp_path / "out" / "air.json").read_text())
    assert report["liver_volume_ml"] == 0, report
    assert report["warnings"] == ["no liver found"], report["warnings"]
    warned = [ln for ln in proc.stdout.splitlines() if " WARNING " in ln]
    assert len(warned) == 1 and "air.nii.gz" in warned[0] and "no liver found" in warned[0], proc.stdout


@pytest.mark.parametrize("layout", ["same", "output_inside_input", "input_inside_output"])
def test_overlapping_input_and_output_are_refused_before_anything_is_written(triton_server, tmp_path, layout):
    root = tmp_path / "data"
    if layout == "same":
        in_dir = out_dir = root
    elif layout == "output_inside_input":
        in_dir, out_dir = root, root / "out"
    else:
        in_dir, out_dir = root / "in", root
    in_dir.mkdir(parents=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_ct(in_dir / "x.nii.gz", ct_volume(SMALL))
    (in_dir / "x.json").write_text('{"mine": true}\n')  # named like an output: must stay as it is
    write_ct(in_dir / "x_seg.nii.gz", np.zeros(SMALL, dtype=np.uint8))
    before = _tree(root)
    proc = run_operator(in_dir, out_dir, triton_server.grpc_url)
    errors = error_lines(proc.stdout)
    assert proc.returncode == 1 and len(errors) == 1, proc.stdout
    assert "choose" in errors[0] and "OUTPUT_DIR" in errors[0], errors[0]
    assert _tree(root) == before  # nothing written, nothing overwritten, nothing removed
    assert "model segmentation" not in proc.stdout


def test_operator_label_maps_in_the_input_are_not_studies(triton_server, tmp_path):
    (tmp_path / "in").mkdir()
    write_ct(tmp_path / "in" / "x.nii.gz", ct_volume(SMALL))
    write_ct(tmp_path / "in" / "x_seg.nii.gz", np.zeros(SMALL, dtype=np.uint8))
    proc = run_operator(tmp_path / "in", tmp_path / "out", triton_server.grpc_url)
    assert proc.returncode == 0, proc.stdout
    assert "x_seg.nii.gz: an operator label map" in proc.stdout
    assert not (tmp_path / "out" / "x_seg_seg.nii.gz").exists()


def test_links_out_of_the_input_are_not_followed(triton_server, tmp_path):
    inside, outside = tmp_path / "in", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    write_ct(outside / "outside.nii.gz", ct_volume(SMALL))
    os.mkfifo(outside / "pipe")  # opening it would block the operator: it must not be opened
    (inside / "secret.nii").symlink_to(outside / "pipe")
    (inside / "linked.nii.gz").symlink_to(outside / "outside.nii.gz")
    (inside / "folder").symlink_to(outside, target_is_directory=True)
    write_ct(inside / "real.nii.gz", ct_volume(SMALL))
    (inside / "alias.nii.gz").symlink_to(inside / "real.nii.gz")  # inside the input: the same study
    proc = run_operator(inside, tmp_path / "out", triton_server.grpc_url, timeout=120)
    log = proc.stdout
    assert proc.returncode == 0, log
    for name in ("secret.nii", "linked.nii.gz"):
        assert f"{name}: a symbolic link out of the input folder (not followed)" in log, log
    assert "not following the folder link" in log
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["real.json", "real_overlay.png",
                                                                    "real_seg.nii.gz"]
    assert "alias.nii.gz is the same file as" in log and "real.nii.gz" in log


def test_a_fifo_named_like_a_study_is_skipped_and_named(triton_server, tmp_path):
    inside = tmp_path / "in"
    (inside / "sub").mkdir(parents=True)
    os.mkfifo(inside / "sub" / "pipe.nii.gz")  # opening it would block the operator: it must not be opened
    (inside / "link.nii").symlink_to(inside / "sub" / "pipe.nii.gz")  # a link inside the input, to the FIFO
    write_ct(inside / "real.nii.gz", ct_volume(SMALL))
    proc = run_operator(inside, tmp_path / "out", triton_server.grpc_url, timeout=120)
    log = proc.stdout
    assert proc.returncode == 0, log
    for name in ("pipe.nii.gz", "link.nii"):
        lines = [ln for ln in log.splitlines() if name in ln]
        assert len(lines) == 1 and "a FIFO, not a regular file (never opened" in lines[0], log
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["real.json", "real_overlay.png",
                                                                     "real_seg.nii.gz"]
    assert "1 studies processed, 0 failed, 2 files skipped" in log, log


def test_the_same_folder_under_two_input_names_is_processed_once(triton_server, tmp_path):
    (tmp_path / "in").mkdir()
    write_ct(tmp_path / "in" / "a.nii.gz", ct_volume(SMALL))
    proc = run_operator(tmp_path / "in", tmp_path / "out", triton_server.grpc_url,
                        NVIDIA_CLARA_INPUTPATHS=f"one:{tmp_path / 'in'};two:{tmp_path / 'in'}")
    assert proc.returncode == 0 and "FAILED" not in proc.stdout, proc.stdout
    assert proc.stdout.count("done a.nii.gz") == 1


def test_same_name_studies_keep_distinct_outputs_or_fail_naming_both(triton_server, tmp_path):
    for sub in ("x", "y"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        write_ct(tmp_path / "in" / sub / "s.nii.gz", ct_volume(SMALL, seed=len(sub)))
    (tmp_path / "other").mkdir()
    write_ct(tmp_path / "other" / "s.nii.gz", ct_volume(SMALL))
    # Sub-folders map to sub-folders of the output: both kept.
    proc = run_operator(tmp_path / "in", tmp_path / "out", triton_server.grpc_url)
    assert proc.returncode == 0, proc.stdout
    assert (tmp_path / "out" / "x" / "s.json").is_file() and (tmp_path / "out" / "y" / "s.json").is_file()
    summary = subprocess.run([sys.executable, "-m", "kit.summary", str(tmp_path / "out")], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    assert "  x/s: " in summary and "  y/s: " in summary, summary
    # Two input entries with the same top-level name: an error naming both, the first one still processed.
    proc = run_operator(tmp_path / "in", tmp_path / "out2", triton_server.grpc_url,
                        NVIDIA_CLARA_INPUTPATHS=f"a:{tmp_path / 'in' / 'x'};b:{tmp_path / 'other'}")
    assert proc.returncode == 1, proc.stdout
    lines = _failed(proc.stdout, "other/s.nii.gz")
    assert len(lines) == 1 and "same output name as" in lines[0] and "x/s.nii.gz" in lines[0], proc.stdout
    assert json.loads((tmp_path / "out2" / "s.json").read_text())["input"].endswith("x/s.nii.gz")


def test_control_characters_in_file_names_do_not_split_log_lines(triton_server, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad\nINFO forged.nii.gz").write_bytes(b"not a nifti file at all" * 20)
    write_ct(tmp_path / "in" / "ok\tname.nii.gz", ct_volume(SMALL))
    proc = run_operator(tmp_path / "in", tmp_path / "out", triton_server.grpc_url)
    lines = proc.stdout.splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\d ", ln) for ln in lines), proc.stdout  # every line is a log record
    assert any("FAILED" in ln and "bad\\nINFO forged.nii.gz" in ln for ln in lines), proc.stdout
    assert any("done 'ok\\tname.nii.gz'" in ln for ln in lines), proc.stdout
    assert leftovers(tmp_path / "out") == []


@pytest.mark.parametrize("variable", ["NVIDIA_CLARA_INPUTPATHS", "NVIDIA_CLARA_OUTPUTPATHS"])
def test_empty_payload_paths_are_a_bad_environment(tmp_path, variable):
    proc = run_operator(tmp_path / "in", tmp_path / "out", "127.0.0.1:1", **{variable: ""})
    errors = error_lines(proc.stdout)
    assert proc.returncode == 2 and len(errors) == 1 and f"{variable} is empty or unset" in errors[0], proc.stdout


def _defect_a() -> None:
    raise TypeError("a defect")


def _defect_b() -> None:
    raise KeyError("another defect")


def _defect_c() -> None:
    raise TypeError("a defect elsewhere")  # the type of _defect_a's, raised in another place


def _out_of_memory() -> None:
    raise MemoryError()


@pytest.mark.parametrize(("faults", "run_level"), [
    ((_defect_a, _defect_b, _defect_a, _defect_c, _defect_b), False),
    ((_out_of_memory,) * 3, True),
])
def test_unexpected_errors_are_logged_once_and_memory_errors_stop_the_run(triton_server, tmp_path, caplog,
                                                                          monkeypatch, faults, run_level):
    """Fault injection of what real inputs cannot trigger on demand: defects in the study code (study i
    fails with faults[i]), and running out of memory."""
    import logging

    import odk
    from odk.errors import RunError

    (tmp_path / "in").mkdir()
    for i in range(len(faults)):
        write_ct(tmp_path / "in" / f"s{i}.nii.gz", ct_volume(SMALL))

    def broken(study):
        faults[int(study.src.name[1])]()

    caplog.set_level(logging.INFO, logger="odk")
    if run_level:
        with pytest.raises(RunError, match=r"out of memory while processing .*s0.nii.gz.*0 of 3 studies done"):
            odk.run_studies([tmp_path / "in"], tmp_path / "out", lambda: broken)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        return
    summary = odk.run_studies([tmp_path / "in"], tmp_path / "out", lambda: broken)
    assert len(summary.failed) == 5 and not summary.done
    # One traceback per distinct defect (type and place), each logged with the study it first failed.
    logged = [(r.getMessage(), r.exc_info[1]) for r in caplog.records if r.exc_info]
    assert [(Path(m.split()[3]).name, type(e).__name__, str(e)) for m, e in logged] == [
        ("s0.nii.gz", "TypeError", "a defect"), ("s1.nii.gz", "KeyError", "'another defect'"),
        ("s3.nii.gz", "TypeError", "a defect elsewhere")], logged
    assert all("a defect of the operator" in m for m, _ in logged)
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("FAILED")]
    s0, s1 = tmp_path / "in" / "s0.nii.gz", tmp_path / "in" / "s1.nii.gz"
    assert [m.split(": ", 1)[1] for m in failed] == [
        "unexpected TypeError: 'a defect' (traceback above)",
        "unexpected KeyError: \"'another defect'\" (traceback above)",
        f"unexpected TypeError: 'a defect' (the same defect as in {s0}: traceback above)",
        "unexpected TypeError: 'a defect elsewhere' (traceback above)",
        f"unexpected KeyError: \"'another defect'\" (the same defect as in {s1}: traceback above)",
    ], failed
