"""dicom-reader on real DICOM files: geometry against dcm2niix, compressed syntaxes, bad input named."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_helpers import (
    DCM2NIIX,
    SAMPLE_CT,
    bad_folder,
    load_series,
    needs_tools,
    run_operator,
    save,
    variant_series,
    write_sample,
)

from kit.phantom import dicom as phantom_dicom


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sample") / "ct"
    write_sample(folder)
    return folder


def read(inputs: Path, out: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[Path]]:
    proc = run_operator("app.dicom.reader", f"payload:{inputs}", f"dicom-reader/volumes:{out}", **env)
    return proc, sorted(out.glob("*.nii"))


def assert_geometry_agrees_with_dcm2niix(series: Path, tmp_path: Path) -> nib.Nifti1Image:
    """Our NIfTI and dcm2niix's of the same series: same voxel -> same world point within 0.01 mm, same HU."""
    proc, volumes = read(series, tmp_path / "ours")
    assert proc.returncode == 0, proc.stdout
    assert len(volumes) == 1
    ours = nib.load(volumes[0])
    d2n_dir = tmp_path / "dcm2niix"
    d2n_dir.mkdir()
    run = subprocess.run([DCM2NIIX, "-z", "n", "-b", "n", "-f", "series", "-o", str(d2n_dir), str(series)],
                         capture_output=True, text=True, check=False, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    theirs = nib.load(d2n_dir / "series.nii")
    # the voxel-to-voxel map between the two files is a signed permutation with integer offsets
    m = np.linalg.inv(theirs.affine) @ ours.affine
    assert np.allclose(m, np.round(m), atol=1e-4), m
    m = np.round(m)
    shape = np.array(ours.shape)
    corners = np.array([[i, j, k, 1] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
    rng = np.random.default_rng(0)
    points = np.vstack([corners, np.c_[rng.integers(0, shape, size=(200, 3)), np.ones(200)]])
    mapped = (m @ points.T).T
    world_ours = (ours.affine @ points.T).T[:, :3]
    world_theirs = (theirs.affine @ mapped.T).T[:, :3]
    assert np.abs(world_ours - world_theirs).max() < 0.01
    a, b = ours.get_fdata(), theirs.get_fdata()
    idx_o, idx_t = points[:, :3].astype(int), mapped[:, :3].astype(int)
    assert np.array_equal(a[tuple(idx_o.T)], b[tuple(idx_t.T)])
    return ours


def test_reader_geometry_agrees_with_dcm2niix(sample: Path, tmp_path: Path) -> None:
    ours = assert_geometry_agrees_with_dcm2niix(sample, tmp_path)
    volumes = sorted((tmp_path / "ours").glob("*.nii"))
    # and the whole volume is the sample NIfTI the series was written from, voxel for voxel, same affine
    src = nib.load(SAMPLE_CT)
    assert np.array_equal(np.asarray(ours.dataobj), np.asarray(src.dataobj))
    assert np.allclose(ours.affine, src.affine, atol=1e-4)
    assert ours.header.get_sform(coded=True)[1] == 1 and ours.header.get_qform(coded=True)[1] == 1
    meta = json.loads(volumes[0].with_name(volumes[0].name.replace(".nii", ".dicom.json")).read_text())
    first = pydicom.dcmread(sample / "CT.0001.dcm", stop_before_pixels=True)
    assert meta["series_instance_uid"] == first.SeriesInstanceUID == volumes[0].name[: -len(".nii")]
    assert meta["study_instance_uid"] == first.StudyInstanceUID
    assert meta["frame_of_reference_uid"] == first.FrameOfReferenceUID
    assert meta["sop_instance_uids"][0] == first.SOPInstanceUID and len(meta["sop_instance_uids"]) == 64


def test_oblique_sagittal_series_agrees_with_dcm2niix(tmp_path: Path) -> None:
    """Sagittal slices tilted 20 degrees, written against their normal: not the easy axial case."""
    src = nib.load(SAMPLE_CT)
    data = np.asarray(src.dataobj)[::4, ::4, :].transpose(2, 1, 0)[:, :, ::-1].copy()  # 64 x 80 x 80
    c, s_ = np.cos(np.radians(20)), np.sin(np.radians(20))
    rotation = np.array([[0, 0, -1], [c, -s_, 0], [s_, c, 0]])  # columns: row, column and slice directions
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([3.0, 3.6, 3.6])
    affine[:3, 3] = [120.0, -80.0, 40.0]
    oblique = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), oblique)
    series = tmp_path / "series"
    phantom_dicom.write_series(oblique, series)
    ours = assert_geometry_agrees_with_dcm2niix(series, tmp_path)
    # the slices run along the normal (row x column direction), the opposite of the file written: k is flipped
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1, data.shape[2] - 1
    assert np.allclose(ours.affine, affine @ flip, atol=1e-3)  # the files keep 6 decimals of the cosines
    assert np.array_equal(np.asarray(ours.dataobj), data[:, :, ::-1])


def test_slices_sorted_by_position_not_instance_number(sample: Path, tmp_path: Path) -> None:
    shuffled = tmp_path / "shuffled"
    numbers = np.random.default_rng(1).permutation(64) + 1
    for ds, n in zip(load_series(sample), numbers, strict=True):
        ds.InstanceNumber = int(n)
        save(ds, shuffled / f"{ds.SOPInstanceUID[-12:]}.dcm")
    proc, volumes = read(shuffled, tmp_path / "out")
    assert proc.returncode == 0, proc.stdout
    src = nib.load(SAMPLE_CT)
    assert np.array_equal(np.asarray(nib.load(volumes[0]).dataobj), np.asarray(src.dataobj))


def test_unsigned_implicit_and_mixed_syntax_slices_read_equal(sample: Path, tmp_path: Path) -> None:
    """Pixel data read straight from the files (unsigned 16 bit, implicit VR; 640 x 640 slices, whose pixel data
    is past pydicom's deferred size) or decoded by pydicom (one RLE slice among them) stack to the same HU."""
    mixed = tmp_path / "mixed"
    for k, ds in enumerate(load_series(sample)):
        hu = np.tile(ds.pixel_array.astype(np.int32) + int(ds.RescaleIntercept), (2, 2))
        ds.PixelRepresentation, ds.RescaleIntercept, ds.Rows, ds.Columns = 0, "-2048", *hu.shape
        ds.PixelData = (hu + 2048).astype(np.uint16).tobytes()
        if k % 2:
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        if k == 7:
            ds.compress(pydicom.uid.RLELossless)
        save(ds, mixed / f"{k:03d}.dcm")
    proc, volumes = read(mixed, tmp_path / "out")
    assert proc.returncode == 0, proc.stdout
    ours = np.asarray(nib.load(volumes[0]).dataobj)
    assert ours.dtype == np.int16 and np.array_equal(ours, np.tile(np.asarray(nib.load(SAMPLE_CT).dataobj), (2, 2, 1)))


@needs_tools
def test_compressed_transfer_syntaxes_decode_equal(sample: Path, tmp_path: Path) -> None:
    folders = {"explicit": sample}
    folders["jpeg2000"] = tmp_path / "j2k"
    write_sample(folders["jpeg2000"], "jpeg2000")
    folders["rle"] = tmp_path / "rle"
    write_sample(folders["rle"], "rle")
    for name, tool in (("jpeg-lossless", ["dcmcjpeg", "+e1"]), ("jpeg-ls", ["dcmcjpls", "+el"])):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        for src in sorted(sample.glob("*.dcm")):
            subprocess.run([*tool, str(src), str(folders[name] / src.name)], check=True, capture_output=True)
    expected_ts = {"jpeg2000": pydicom.uid.JPEG2000Lossless, "rle": pydicom.uid.RLELossless,
                   "jpeg-lossless": pydicom.uid.JPEGLosslessSV1, "jpeg-ls": pydicom.uid.JPEGLSLossless}
    arrays = {}
    for name, folder in folders.items():
        proc, volumes = read(folder, tmp_path / f"out-{name}")
        assert proc.returncode == 0, f"{name}: {proc.stdout}"
        meta = json.loads(next((tmp_path / f"out-{name}").glob("*.dicom.json")).read_text())
        if name in expected_ts:
            assert meta["transfer_syntaxes"] == [expected_ts[name]], name
        arrays[name] = (np.asarray(nib.load(volumes[0]).dataobj), nib.load(volumes[0]).affine)
    ref, ref_affine = arrays["explicit"]
    for name, (arr, affine) in arrays.items():
        assert arr.dtype == ref.dtype and np.array_equal(arr, ref), name
        assert np.allclose(affine, ref_affine), name


def test_bad_input_named_and_good_series_still_written(sample: Path, tmp_path: Path) -> None:
    job = tmp_path / "job"
    uids = bad_folder(sample, job)
    out = tmp_path / "out"
    proc, volumes = read(job, out)
    log = proc.stdout
    assert proc.returncode == 0, log  # the good series was written: the run succeeds
    assert [v.name for v in volumes] == [f"{uids['good']}.nii"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{uids['good']}.nii", f"{uids['good']}.dicom.json", "reader-report.json"])  # nothing half-written

    def one_line(*words: str) -> str:
        lines = [line for line in log.splitlines() if all(w in line for w in words)]
        assert len(lines) == 1, (words, log)
        return lines[0]

    one_line("REFUSED", uids["missing"], "missing slice")
    one_line("REFUSED", uids["duplicate"], "duplicate slices")
    one_line("REFUSED", uids["orientations"], "orientations")
    one_line("REFUSED", uids["localizer"], "localizer")
    one_line("not selected", uids["mr"], "modality MR")
    one_line("skipping", uids["sr"], "non-image")
    one_line("corrupt.dcm", "unreadable")
    one_line("truncated.dcm", "unreadable")
    one_line("notes.txt", "not a DICOM file")
    one_line("copy-of-a-good-slice.dcm", "another copy")
    one_line("selected", uids["good"], "64 slices")
    report = json.loads((out / "reader-report.json").read_text())
    assert report["written"] == [uids["good"]]
    assert set(report["refused"]) == {uids[k] for k in ("missing", "duplicate", "orientations", "localizer")}
    src = nib.load(SAMPLE_CT)
    assert np.array_equal(np.asarray(nib.load(volumes[0]).dataobj), np.asarray(src.dataobj))


def test_links_out_of_the_input_and_fifos_are_not_opened(sample: Path, tmp_path: Path) -> None:
    """As for NIfTI inputs (app/inputfiles.py): a link to a DICOM file outside the input, and FIFOs (one in the
    input, one linked from inside, one linked from outside), are skipped and named; none is opened (a FIFO
    opened for reading would block the reader until the timeout)."""
    job, outside = tmp_path / "job", tmp_path / "outside"
    shutil.copytree(sample, job / "ct")
    stray = variant_series(load_series(sample), "outside the input", n=20)
    for i, ds in enumerate(stray):
        save(ds, outside / f"{i:03d}.dcm")
        (job / f"stray-{i:03d}.dcm").symlink_to(outside / f"{i:03d}.dcm")
    os.mkfifo(outside / "pipe")
    os.mkfifo(job / "pipe")
    (job / "outside-pipe.dcm").symlink_to(outside / "pipe")
    (job / "inside-pipe.dcm").symlink_to(job / "pipe")
    (job / "ct-link.dcm").symlink_to(job / "ct" / "CT.0001.dcm")  # inside the input: followed, the same instance
    proc = run_operator("app.dicom.reader", f"payload:{job}", f"dicom-reader/volumes:{tmp_path / 'out'}",
                        timeout=120)
    log = proc.stdout
    assert proc.returncode == 0, log
    good = load_series(sample)[0].SeriesInstanceUID
    assert [v.name for v in (tmp_path / "out").glob("*.nii")] == [f"{good}.nii"]
    assert stray[0].SeriesInstanceUID not in log + (tmp_path / "out" / "reader-report.json").read_text()

    def skipped(name: str) -> str:
        lines = [line for line in log.splitlines() if f"skipping {job / name}: " in line]
        assert len(lines) == 1, (name, log)
        return lines[0]

    for i in range(len(stray)):
        assert "a symbolic link out of the input folder" in skipped(f"stray-{i:03d}.dcm")
    assert "a symbolic link out of the input folder" in skipped("outside-pipe.dcm")
    assert "not a regular file" in skipped("pipe")
    assert "not a regular file" in skipped("inside-pipe.dcm")
    assert "ct-link.dcm" in next(line for line in log.splitlines() if "another copy" in line)
    assert "selected series" in log and "64 slices" in log


def test_selection_rules_from_env(sample: Path, tmp_path: Path) -> None:
    proc, volumes = read(sample, tmp_path / "a", DICOM_SELECT_DESCRIPTION="^liver$")
    assert proc.returncode != 0 and not volumes
    assert "does not match '^liver$' (DICOM_SELECT_DESCRIPTION)" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].count("no series selected") == 1
    proc, volumes = read(sample, tmp_path / "b", DICOM_SELECT_MIN_SLICES="65")
    assert proc.returncode != 0 and "fewer than 65" in proc.stdout
    proc, volumes = read(sample, tmp_path / "c", DICOM_SELECT_MODALITY="ct, mr", DICOM_SELECT_DESCRIPTION="abdomen")
    assert proc.returncode == 0 and len(volumes) == 1
    proc, _ = read(sample, tmp_path / "d", DICOM_SELECT_MIN_SLICES="many")
    assert proc.returncode != 0 and "DICOM_SELECT_MIN_SLICES='many' is not a whole number" in proc.stdout
    assert "Traceback" not in proc.stdout


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_volume_file_is_what_nibabel_writes(dtype: type) -> None:
    """The reader writes its stack without nibabel's copies; the file is still nibabel's, byte for byte."""
    from odk.dicom.volume import SeriesVolume, nifti_bytes

    stack = np.random.default_rng(3).integers(-1024, 3000, size=(12, 40, 32)).astype(dtype)  # slices, rows, cols
    affine = np.array([[-0.7, 0, 0, 10.0], [0, -0.7, 0, 20.0], [0, 0, 2.5, -30.0], [0, 0, 0, 1]])
    for data in (stack.transpose(2, 1, 0), np.asfortranarray(stack.transpose(2, 1, 0))[:, :, ::-1]):
        img = nib.Nifti1Image(data, affine)
        img.set_sform(affine, code=1)
        img.set_qform(affine, code=1)
        img.header.set_xyzt_units("mm", "sec")
        img.header["descrip"] = b"CT test"
        assert nifti_bytes(SeriesVolume(data, affine, None), "CT test", False) == img.to_bytes()
