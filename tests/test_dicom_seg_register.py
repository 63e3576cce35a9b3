"""dicom-seg-writer and register-results on real files: dciodvfy, highdicom read-back, dcmtk storescp."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_helpers import (
    SAMPLE_TRUTH,
    dciodvfy_problems,
    needs_tools,
    rejecting_scp,
    run_operator,
    storescp,
    write_sample,
)
from dicom_net_helpers import write_ct_series

from kit.triton.readiness import free_ports

REPORT = {"labels": {"background": {"label": 0}, "liver": {"label": 1}, "lesion": {"label": 2}},
          "model": {"name": "segmentation_liver_v1", "version": "1"}}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sample as JPEG 2000 DICOM, read by the dicom-reader, with the truth as the label map, written as SEG."""
    root = tmp_path_factory.mktemp("seg")
    dicom, volumes, labels, seg = root / "dicom", root / "volumes", root / "labels", root / "seg"
    write_sample(dicom, "jpeg2000")
    proc = run_operator("app.dicom.reader", f"payload:{dicom}", f"dicom-reader/volumes:{volumes}")
    assert proc.returncode == 0, proc.stdout
    stem = next(volumes.glob("*.nii")).name[: -len(".nii")]
    labels.mkdir()
    shutil.copy(SAMPLE_TRUTH, labels / f"{stem}_seg.nii.gz")
    (labels / f"{stem}.json").write_text(json.dumps(REPORT))
    proc = run_operator("app.dicom.segwriter", f"payload:{dicom};dicom-reader/volumes:{volumes};"
                        f"segmentation/segmentation:{labels}", f"dicom-seg-writer/seg:{seg}")
    assert proc.returncode == 0, proc.stdout
    return {"dicom": dicom, "volumes": volumes, "labels": labels, "seg": seg, "stem": Path(stem)}


def check_seg(seg_path: Path, sidecar: Path, label_map: Path, model: str = "segmentation_liver_v1") -> None:
    """The SEG against its series and label map: what must hold for every SEG the writer makes."""
    text, problems = dciodvfy_problems(seg_path)
    assert not problems, text
    meta = json.loads(sidecar.read_text())
    seg = hd.seg.segread(seg_path)
    assert seg.SOPClassUID == pydicom.uid.SegmentationStorage
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.StudyInstanceUID == meta["study_instance_uid"]
    assert seg.FrameOfReferenceUID == meta["frame_of_reference_uid"]
    assert seg.SeriesInstanceUID != meta["series_instance_uid"]
    segments = [(s.SegmentNumber, s.SegmentLabel, s.SegmentedPropertyTypeCodeSequence[0].CodeValue,
                 s.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator) for s in seg.SegmentSequence]
    assert segments == [(1, "liver", "10200004", "SCT"), (2, "lesion", "52988006", "SCT")]
    for s in seg.SegmentSequence:
        assert s.SegmentAlgorithmType == "AUTOMATIC"
        assert s.SegmentAlgorithmName == model
        algo = s.SegmentationAlgorithmIdentificationSequence[0]
        assert (algo.AlgorithmName, algo.AlgorithmVersion) == (model, "1")
    # every frame references one source instance of the series
    refs = {f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            for f in seg.PerFrameFunctionalGroupsSequence}
    assert refs <= set(meta["sop_instance_uids"]) and refs
    back = seg.get_pixels_by_source_instance(meta["sop_instance_uids"], combine_segments=True,
                                             skip_overlap_checks=True)
    expected = np.asarray(nib.load(label_map).dataobj)
    assert np.array_equal(back.transpose(2, 1, 0), expected)  # (slice, row, column) -> NIfTI (i, j, k)


@needs_tools
def test_seg_passes_dciodvfy_and_reads_back_equal(chain: dict[str, Path]) -> None:
    stem = str(chain["stem"])
    outputs = sorted(p.name for p in chain["seg"].iterdir())
    assert outputs == [f"{stem}_seg.dcm"]
    check_seg(chain["seg"] / f"{stem}_seg.dcm", chain["volumes"] / f"{stem}.dicom.json",
              chain["labels"] / f"{stem}_seg.nii.gz")


def test_seg_writer_refuses_a_label_map_off_its_grid(chain: dict[str, Path], tmp_path: Path) -> None:
    stem = str(chain["stem"])
    labels = tmp_path / "labels"
    labels.mkdir()
    img = nib.load(chain["labels"] / f"{stem}_seg.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, :40], img.affine), labels / f"{stem}_seg.nii.gz")
    (labels / f"{stem}.json").write_text(json.dumps(REPORT))
    proc = run_operator("app.dicom.segwriter", f"payload:{chain['dicom']};dicom-reader/volumes:{chain['volumes']};"
                        f"segmentation/segmentation:{labels}", f"dicom-seg-writer/seg:{tmp_path / 'seg'}")
    assert proc.returncode != 0
    assert [line for line in proc.stdout.splitlines() if "FAILED" in line and "not on its series' grid" in line]
    assert not list((tmp_path / "seg").iterdir())
    assert "Traceback" not in proc.stdout


def register(inputs: Path, out: Path, destination: str, **env: str):
    return run_operator("app.dicom.register", f"dicom-seg-writer/seg:{inputs}", f"register-results/report:{out}",
                        DICOM_DESTINATION=destination, DICOM_RETRY_DELAY_S="0.2", **env)


@needs_tools
def test_register_results_to_dcmtk_storescp(chain: dict[str, Path], tmp_path: Path) -> None:
    received = tmp_path / "received"
    stem = str(chain["stem"])
    sent = pydicom.dcmread(chain["seg"] / f"{stem}_seg.dcm")
    with storescp(received, "STORESCP") as port:
        proc = register(chain["seg"], tmp_path / "out", f"STORESCP@127.0.0.1:{port}", DICOM_CALLING_AET="ODKTEST")
    assert proc.returncode == 0, proc.stdout
    files = list(received.iterdir())
    assert len(files) == 1
    got = pydicom.dcmread(files[0])
    assert got.SOPInstanceUID == sent.SOPInstanceUID and got.PixelData == sent.PixelData
    report = json.loads((tmp_path / "out" / "register-report.json").read_text())
    (dest,) = report["destinations"]
    assert dest["destination"] == f"STORESCP@127.0.0.1:{port}" and dest["ok"]
    assert [(o["sop_instance_uid"], o["status"], o["ok"]) for o in dest["objects"]] == \
        [(sent.SOPInstanceUID, "0x0000", True)]


@needs_tools
def test_register_results_unreachable_and_refusing(chain: dict[str, Path], tmp_path: Path) -> None:
    (closed,) = free_ports(1)
    proc = register(chain["seg"], tmp_path / "a", f"PACS@127.0.0.1:{closed}", DICOM_RETRIES="2")
    assert proc.returncode != 0
    assert proc.stdout.count("attempt ") == 2  # bounded retries
    errors = [line for line in proc.stdout.splitlines() if "clara" in line and "failed" in line]
    assert len(errors) == 1 and f"PACS@127.0.0.1:{closed} is unreachable" in errors[0], proc.stdout
    report = json.loads((tmp_path / "a" / "register-report.json").read_text())
    assert report["destinations"][0]["objects"][0]["status"] == "not sent"

    with rejecting_scp("REJECTS") as port:
        proc = register(chain["seg"], tmp_path / "b", f"REJECTS@127.0.0.1:{port}")
    assert proc.returncode != 0
    assert "rejected the association" in proc.stdout and "attempt " not in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stdout

    proc = register(chain["seg"], tmp_path / "c", "not-a-destination")
    assert proc.returncode != 0 and "is not AET@host:port" in proc.stdout


@needs_tools
def test_register_results_to_two_destinations_one_refusing(chain: dict[str, Path], tmp_path: Path) -> None:
    """DICOM_DESTINATION with two storescp, the first refusing every association: the second still gets every
    object, the report has a status per object for each, and the run fails naming only the refusing one."""
    objects = tmp_path / "objects"
    write_ct_series(objects / "ct", slices=3)
    shutil.copy(chain["seg"] / f"{chain['stem']}_seg.dcm", objects)
    sent = {pydicom.dcmread(p).SOPInstanceUID for p in objects.rglob("*") if p.is_file()}
    with rejecting_scp("REFUSER") as bad, storescp(tmp_path / "got", "GOOD") as good:
        refusing, accepting = f"REFUSER@127.0.0.1:{bad}", f"GOOD@127.0.0.1:{good}"
        proc = register(objects, tmp_path / "out", f"{refusing},{accepting}")
    assert proc.returncode != 0, proc.stdout
    assert {pydicom.dcmread(p).SOPInstanceUID for p in (tmp_path / "got").iterdir()} == sent
    report = json.loads((tmp_path / "out" / "register-report.json").read_text())
    assert report["objects"] == len(sent) == 4
    by_dest = {d["destination"]: d for d in report["destinations"]}
    assert list(by_dest) == [refusing, accepting]
    assert by_dest[accepting]["ok"] and not by_dest[accepting]["error"]
    assert {(o["sop_instance_uid"], o["status"], o["ok"]) for o in by_dest[accepting]["objects"]} == \
        {(uid, "0x0000", True) for uid in sent}
    assert not by_dest[refusing]["ok"] and "rejected the association" in by_dest[refusing]["error"]
    assert {(o["sop_instance_uid"], o["status"], o["ok"]) for o in by_dest[refusing]["objects"]} == \
        {(uid, "not sent", False) for uid in sent}
    errors = [line for line in proc.stdout.splitlines() if "clara" in line and "failed" in line]
    assert len(errors) == 1, proc.stdout
    assert f"{refusing} rejected the association" in errors[0] and accepting not in errors[0], errors[0]
    assert "Traceback" not in proc.stdout


def test_register_results_without_destination_says_so(chain: dict[str, Path], tmp_path: Path) -> None:
    proc = register(chain["seg"], tmp_path / "out", "")
    assert proc.returncode == 0, proc.stdout
    assert "DICOM_DESTINATION is not set: 1 object(s) not sent" in proc.stdout
    assert json.loads((tmp_path / "out" / "register-report.json").read_text())["skipped"]


def test_bench_dicom_figures_on_a_tiny_series(tmp_path: Path) -> None:
    from kit.bench import dicom as bench_dicom

    fig = bench_dicom.bench_dicom(tmp_path / "cache", tmp_path / "work", repeats=1, size_name="tiny")
    assert fig["series"]["shape"] == [48, 48, 32] and fig["runs"] == 1
    for key in ("reader_wall_s", "dcm2niix_wall_s", "reader_converting_s", "seg_writer_wall_s", "seg_write_s"):
        assert fig[key] > 0, key
    # The ratio comes from the unrounded medians; the walls are printed to the millisecond, and a tiny
    # series converts in tens of milliseconds, so the printed walls agree with it only to a few percent.
    assert fig["reader/dcm2niix"] == pytest.approx(fig["reader_wall_s"] / fig["dcm2niix_wall_s"], rel=0.05)
    # the verdict is computed from the unpaired ratio against the one bound (kit.bench.report.TARGETS)
    assert fig["target"] == {"value": fig["reader/dcm2niix"], "target": "<= 3.0",
                             "met": fig["reader/dcm2niix"] <= 3.0}
    lines = bench_dicom.report_lines(fig)
    verdict = "MET" if fig["target"]["met"] else "MISSED"
    assert len(lines) == 2 and "48x48x32" in lines[0] and f"target <= 3.0: {verdict}" in lines[0]
    _, problems = dciodvfy_problems(next((tmp_path / "work" / "seg").glob("*.dcm")))
    assert not problems


@needs_tools
def test_seg_writer_alone_takes_the_labels_from_the_model_config(chain: dict[str, Path], tmp_path: Path) -> None:
    stem = str(chain["stem"])
    labels = tmp_path / "labels"
    labels.mkdir()
    shutil.copy(chain["labels"] / f"{stem}_seg.nii.gz", labels)  # no segmentation report beside it
    config = Path(__file__).resolve().parents[1] / "local/models/segmentation_liver_v1/config.pbtxt"
    inputs = f"payload:{chain['dicom']};dicom-reader/volumes:{chain['volumes']};segmentation/segmentation:{labels}"
    proc = run_operator("app.dicom.segwriter", inputs, f"dicom-seg-writer/seg:{tmp_path / 'a'}")
    assert proc.returncode != 0 and "set SEG_MODEL_CONFIG" in proc.stdout
    proc = run_operator("app.dicom.segwriter", inputs, f"dicom-seg-writer/seg:{tmp_path / 'b'}",
                        SEG_MODEL_CONFIG=str(config))
    assert proc.returncode == 0, proc.stdout
    check_seg(tmp_path / "b" / f"{stem}_seg.dcm", chain["volumes"] / f"{stem}.dicom.json",
              labels / f"{stem}_seg.nii.gz")



def test_seg_writer_reads_the_model_config_as_the_operator_and_triton_do(tmp_path: Path) -> None:
    """SEG_MODEL_CONFIG: labels as the operator splits them, and the version Triton serves from the version
    directories beside the config (its version_policy; default the latest one), not a number of its own."""
    from app.dicom.segwriter import model_config
    from odk.config import ConfigError

    source = Path(__file__).resolve().parents[1] / "local/models/segmentation_liver_v1/config.pbtxt"
    model = tmp_path / "segmentation_liver_v1"
    model.mkdir()
    config = model / "config.pbtxt"
    config.write_text(source.read_text())
    with pytest.raises(ConfigError, match="no version directory"):
        model_config(str(config))
    for version in ("1", "3", "10", "notes"):
        (model / version).mkdir()
    algo = model_config(str(config))
    assert (algo.name, algo.version, algo.labels) == ("segmentation_liver_v1", "10", ("background", "liver", "lesion"))
    config.write_text(source.read_text() + "version_policy: { specific: { versions: [1, 3, 7] } }\n")
    assert model_config(str(config)).version == "3"  # 7 has no directory: Triton serves 1 and 3
    config.write_text(source.read_text() + "version_policy: { all: {} }\n")
    assert model_config(str(config)).version == "10"
