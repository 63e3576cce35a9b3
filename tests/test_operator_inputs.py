"""The operator against a real embedded Triton: bad inputs, bad configuration, unreachable server."""

from __future__ import annotations

import gzip
import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from operator_helpers import orphaned_shm_regions, run_operator


def _volume(shape=(64, 64, 24), dtype=np.int16) -> np.ndarray:
    x, y, _z = np.mgrid[: shape[0], : shape[1], : shape[2]]
    body = ((x - shape[0] / 2) / (shape[0] * 0.4)) ** 2 + ((y - shape[1] / 2) / (shape[1] * 0.35)) ** 2 < 1
    return np.where(body, 60, -1000).astype(dtype)


def _write(path: Path, data: np.ndarray, affine=None) -> Path:
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 3.0, 1.0]) if affine is None else affine), str(path))
    return path


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad_inputs")
    good = _write(d / "good.nii.gz", _volume())
    raw = good.read_bytes()
    corrupt = bytearray(raw)
    corrupt[len(raw) // 2: len(raw) // 2 + 64] = bytes(64)
    (d / "corrupt.nii.gz").write_bytes(bytes(corrupt))
    (d / "truncated.nii.gz").write_bytes(raw[: len(raw) // 2])
    plain = _write(d / "plain.nii", _volume())
    (d / "truncated_plain.nii").write_bytes(plain.read_bytes()[:4000])
    plain.unlink()
    _write(d / "flat2d.nii.gz", _volume()[:, :, 0])
    _write(d / "five_d.nii.gz", _volume()[..., None, None].repeat(2, axis=4))
    rgb_dtype = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb = np.zeros((32, 32, 8), dtype=rgb_dtype)
    _write(d / "rgb.nii.gz", rgb)
    (d / "notes.txt").write_text("not an image\n")
    (d / "fake.nii").write_bytes(b"this is not nifti" * 10)
    _write(d / "single4d.nii.gz", _volume()[..., None])
    return d


BAD = {
    "corrupt.nii.gz": "gzip",
    "truncated.nii.gz": "gzip",
    "truncated_plain.nii": "truncated",
    "flat2d.nii.gz": "3D",
    "five_d.nii.gz": "3D",
    "rgb.nii.gz": "RGB",
    "fake.nii": "NIfTI",
}


def test_bad_inputs_are_isolated(triton_server, bad_inputs, tmp_path):
    before = orphaned_shm_regions()
    out = tmp_path / "out"
    proc = run_operator(bad_inputs, out, triton_server.grpc_url)
    log = proc.stdout
    assert proc.returncode != 0, log
    # Good studies (a 4D volume with a single time point included) are processed...
    for name in ("good", "single4d"):
        assert (out / f"{name}_seg.nii.gz").is_file(), log
        assert (out / f"{name}_overlay.png").is_file(), log
        assert (out / f"{name}.json").is_file(), log
    seg4d = nib.load(str(out / "single4d_seg.nii.gz"))
    assert seg4d.shape == (64, 64, 24)
    # ...each bad one is named in the log with its reason, and leaves nothing behind.
    for name, reason in BAD.items():
        lines = [ln for ln in log.splitlines() if "FAILED" in ln and name in ln]
        assert len(lines) == 1, f"{name}: {lines}\n{log}"
        assert reason.lower() in lines[0].lower(), lines[0]
        stem = name.split(".nii")[0]
        assert not list(out.glob(f"{stem}_*")) and not (out / f"{stem}.json").exists()
    assert "skipping" in log and "notes.txt" in log
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert "Traceback" not in log
    summary = [ln for ln in log.splitlines() if " ERROR " in ln and "FAILED" not in ln]
    assert len(summary) == 1 and f"{len(BAD)} of {len(BAD) + 2} studies failed" in summary[0], log
    assert orphaned_shm_regions() == before


def test_empty_input_folder_fails_clearly(triton_server, tmp_path):
    (tmp_path / "in").mkdir()
    proc = run_operator(tmp_path / "in", tmp_path / "out", triton_server.grpc_url)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stdout.splitlines() if " ERROR " in ln]
    assert len(errors) == 1 and "no NIfTI studies" in errors[0] and "INPUT_DIR" in errors[0], proc.stdout
    assert "Traceback" not in proc.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_triton_times_out_with_one_line(tmp_path):
    (tmp_path / "in").mkdir()
    _write(tmp_path / "in" / "a.nii.gz", _volume())
    url = f"127.0.0.1:{_free_port()}"
    proc = run_operator(tmp_path / "in", tmp_path / "out", url, TRITON_READY_TIMEOUT="2")
    assert proc.returncode != 0
    errors = [ln for ln in proc.stdout.splitlines() if " ERROR " in ln]
    assert len(errors) == 1, proc.stdout
    assert f"cannot reach Triton at {url} within 2 s (connection refused)" in errors[0], proc.stdout
    assert "make triton" in errors[0] and "NVIDIA_TRITON_GRPCURI" in errors[0]
    assert "Traceback" not in proc.stdout


@pytest.mark.parametrize(("env", "expected"), [
    ({"TRITON_MODEL_INPUT": "WRONG"}, "has no input named 'WRONG'"),
    ({"TRITON_MODEL_OUTPUT": "NOPE"}, "has no output named 'NOPE'"),
    # A ready server that does not know the model: said after a quarter of TRITON_READY_TIMEOUT, not all of it.
    ({"TRITON_MODEL_NAME": "no_such_model", "TRITON_READY_TIMEOUT": "20"},
     "is ready but has no model 'no_such_model'; 'make triton-status' lists the models it serves"),
    ({"TRITON_MODEL_VERSION": "7", "TRITON_READY_TIMEOUT": "20"},
     "is ready but has no model 'segmentation_liver_v1' (version 7)"),
    ({"NVIDIA_TRITON_GRPCURI": "localhost"}, "expected host:port"),
    ({"ODK_OVERLAY": "maybe"}, "ODK_OVERLAY='maybe'"),
    ({"ODK_LOG_LEVEL": "LOUD"}, "ODK_LOG_LEVEL='LOUD'"),
    ({"TRITON_TRANSPORT": "carrier-pigeon"}, "TRITON_TRANSPORT='carrier-pigeon'"),
    ({"ODK_HU_WINDOW": "300,-200"}, "low < high"),
])
def test_configuration_mismatch_is_one_clear_line(triton_server, tmp_path, env, expected):
    (tmp_path / "in").mkdir()
    _write(tmp_path / "in" / "a.nii.gz", _volume())
    proc = run_operator(tmp_path / "in", tmp_path / "out", triton_server.grpc_url, **env)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stdout.splitlines() if " ERROR " in ln]
    assert len(errors) == 1 and expected in errors[0], proc.stdout
    assert "Traceback" not in proc.stdout
    assert not (tmp_path / "out" / "a_seg.nii.gz").exists()


def test_gzip_read_matches_nibabel(tmp_path):
    """The fast isal reader returns exactly what nibabel reads."""
    from odk.nifti import read_volume

    data = _volume(dtype=np.float32) + np.float32(0.25)
    p = _write(tmp_path / "v.nii.gz", data)
    vol = read_volume(p)
    ref = nib.load(str(p))
    assert np.array_equal(vol.data, np.asanyarray(ref.dataobj))
    assert np.array_equal(vol.affine, ref.affine)
    with gzip.open(p) as fh:
        assert fh.read(4)  # a real gzip stream
