"""Pure pieces of the operator: geometry, sliding windows, post-processing, configuration."""

from __future__ import annotations

import itertools

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from odk import transforms
from odk import transforms as postprocess
from odk import windows as sliding
from odk.config import ConfigError, from_env, triton_url


def _reoriented(data: np.ndarray, affine: np.ndarray, perm, flips) -> nib.Nifti1Image:
    ornt = np.array([[perm[i], flips[i]] for i in range(3)])
    return nib.Nifti1Image(data, affine).as_reoriented(ornt)


@pytest.mark.parametrize(("perm", "flips"), list(itertools.product(
    itertools.permutations(range(3)), [(1, 1, 1), (-1, 1, -1), (-1, -1, -1)])))
def test_forward_is_independent_of_storage_order(perm, flips):
    rng = np.random.default_rng(1)
    data = rng.integers(-1000, 1000, (40, 36, 12)).astype(np.int16)
    affine = np.diag([0.9, 0.8, 3.0, 1.0])
    ref, ref_geom = transforms.forward(data, affine, (2.5, 2.5, 2.5), (-200, 300))
    img = _reoriented(data, affine, perm, flips)
    vol, geom = transforms.forward(np.asarray(img.dataobj), img.affine, (2.5, 2.5, 2.5), (-200, 300))
    assert np.array_equal(vol, ref)
    assert geom.model_shape == ref_geom.model_shape
    # Labels made on the model grid go back onto exactly the stored grid of each copy.
    labels = (vol > 0.5).astype(np.uint8)
    back = transforms.inverse_labels(labels, geom)
    back_ref = transforms.inverse_labels(labels, ref_geom)
    assert back.shape == img.shape
    assert np.array_equal(np.asarray(nib.Nifti1Image(back, img.affine).as_reoriented(
        nib.orientations.io_orientation(img.affine)).dataobj), back_ref)


def test_resample_linear_matches_scipy_zoom():
    vol = np.random.default_rng(2).normal(size=(50, 41, 13)).astype(np.float32)
    out = transforms.resample_linear(vol, (20, 16, 30))
    ref = ndimage.zoom(vol, (20 / 50, 16 / 41, 30 / 13), order=1, grid_mode=True, mode="nearest")
    assert np.allclose(out, ref, atol=1e-5)


def test_nearest_inverse_restores_model_labels():
    labels = np.random.default_rng(3).integers(0, 3, (33, 20, 7)).astype(np.uint8)
    up = transforms.resample_nearest(labels, (100, 61, 21))
    assert np.array_equal(transforms.resample_nearest(up, labels.shape), labels)


def test_hu_window_clips_and_scales():
    out = transforms.hu_window(np.array([-1000, -200, 50, 300, 3000], dtype=np.int16), -200, 300)
    assert out.dtype == np.float32
    assert np.allclose(out, [0, 0, 0.5, 1, 1])


def test_window_grid_covers_volume_like_monai():
    assert sliding.axis_starts(164, 96, 0.25) == [0, 68]
    assert sliding.axis_starts(200, 96, 0.25) == [0, 72, 104]
    assert sliding.axis_starts(50, 96, 0.5) == [0]
    starts = sliding.window_starts((164, 164, 200), (96, 96, 96), 0.25)
    assert len(starts) == 12


@pytest.mark.parametrize("blend", ["constant", "gaussian"])
def test_sliding_window_reassembles_an_identity_model(blend):
    vol = np.random.default_rng(4).random((100, 40, 130)).astype(np.float32)

    def predict(batch):
        assert batch.shape[0] <= 3 and batch.shape[1:] == (1, 32, 32, 32)
        return np.concatenate([batch, 1 - batch], axis=1)

    out = sliding.sliding_window(vol, predict, roi=(32, 32, 32), overlap=0.5, batch_size=3, blend=blend)
    assert out.shape == (2, 100, 40, 130)
    assert np.allclose(out[0], vol, atol=1e-5) and np.allclose(out[1], 1 - vol, atol=1e-5)


def test_sliding_window_pads_small_volumes():
    vol = np.ones((10, 50, 20), dtype=np.float32)
    out = sliding.sliding_window(vol, lambda b: np.concatenate([b, b], axis=1), roi=(32, 32, 32))
    assert out.shape == (2, 10, 50, 20) and np.allclose(out, 1)


def test_keep_largest_organ_keeps_lesions_of_the_liver():
    labels = np.zeros((30, 30, 30), dtype=np.uint8)
    labels[2:20, 2:20, 2:20] = 1
    labels[8:12, 8:12, 8:12] = 2
    labels[25:28, 25:28, 25:28] = 1  # a small detached false positive
    out = postprocess.keep_largest_component(labels)
    assert out[26, 26, 26] == 0 and out[10, 10, 10] == 2 and out[3, 3, 3] == 1


def test_volumes_in_ml():
    counts = postprocess.label_counts(np.array([0, 1, 1, 2], dtype=np.uint8), 3)
    assert counts == [1, 2, 1]
    assert postprocess.volumes_ml(counts, (10.0, 10.0, 10.0)) == [1.0, 2.0, 1.0]


def test_triton_url_fallbacks():
    assert triton_url({"NVIDIA_TRITON_GRPCURI": "10.0.0.1:8001", "TRITON_URL": "x:1"}) == "10.0.0.1:8001"
    assert triton_url({"NVIDIA_CLARA_TRTISURI": "trtis:8001"}) == "trtis:8001"
    assert triton_url({"NVIDIA_CLARA_TRTISURI": "10.1.2.3:8000"}) == "10.1.2.3:8001"  # legacy HTTP endpoint
    assert triton_url({"TRITON_URL": "grpc://host:9001/"}) == "host:9001"
    assert triton_url({}) == "localhost:8001"


@pytest.mark.parametrize(("env", "message"), [
    ({"ODK_OVERLAP": "1.5"}, "ODK_OVERLAP"),
    ({"ODK_SPACING_MM": "1,2"}, "3 comma-separated numbers"),
    ({"TRITON_READY_TIMEOUT": "soon"}, "TRITON_READY_TIMEOUT"),
    ({"ODK_BLEND": "median"}, "ODK_BLEND"),
    ({"TRITON_RETRIES": "three"}, "expected a whole number"),
    ({"ODK_BATCH_SIZE": "-1"}, "expected a whole number >= 0"),
    ({"ODK_LARGEST_COMPONENT": "typo"}, "expected 1 or 0"),
    ({"NVIDIA_TRITON_GRPCURI": "http://127.0.0.1:8000"}, "host:port of Triton's gRPC endpoint"),
    ({"NVIDIA_TRITON_GRPCURI": "localhost"}, "host:port"),
])
def test_bad_configuration_is_named(env, message):
    with pytest.raises(ConfigError, match=message):
        from_env(env)


@pytest.mark.parametrize("value", ["1", "1.0", "1.5", "-0.1"])
def test_overlap_message_states_the_range_it_checks(value):
    """ODK_OVERLAP is refused from 1 up, and the message says so ('< 1', not '<= 1')."""
    with pytest.raises(ConfigError) as err:
        from_env({"ODK_OVERLAP": value})
    assert str(err.value) == f"ODK_OVERLAP={value!r}: expected a number >= 0 and < 1, e.g. 0.25"
    assert from_env({"ODK_OVERLAP": "0.99"}).overlap == 0.99 and from_env({"ODK_OVERLAP": "0"}).overlap == 0.0


def test_configuration_overrides():
    cfg = from_env({"ODK_SPACING_MM": "2, 2, 3", "ODK_HU_WINDOW": "-100,200", "TRITON_TRANSPORT": "GRPC",
                    "ODK_LARGEST_COMPONENT": "0"})
    assert cfg.spacing_mm == (2.0, 2.0, 3.0) and cfg.hu_window == (-100.0, 200.0)
    assert cfg.transport == "grpc" and not cfg.largest_component


def test_resampling_does_not_depend_on_memory_layout():
    vol = np.random.default_rng(5).normal(size=(47, 38, 21)).astype(np.float32)
    c = transforms.resample_linear(vol, (20, 19, 30))
    f = transforms.resample_linear(np.asfortranarray(vol), (20, 19, 30))
    assert np.array_equal(c, f)
    labels = (vol > 0).astype(np.uint8)
    for shape in [(100, 80, 21), (20, 19, 30)]:
        assert np.array_equal(transforms.resample_nearest(labels, shape),
                              transforms.resample_nearest(np.asfortranarray(labels), shape))


def test_atomic_write_gives_usual_permissions(tmp_path):
    import os

    from odk.files import atomic_write_bytes

    atomic_write_bytes(tmp_path / "a.json", b"{}")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_argmax_labels_equals_numpy_argmax_including_ties():
    rng = np.random.default_rng(6)
    probs = rng.integers(0, 4, (3, 20, 30, 10)).astype(np.float32)  # many ties
    assert np.array_equal(postprocess.argmax_labels(probs), np.argmax(probs, axis=0).astype(np.uint8))


class _FlakySession:
    """Fault injection for the retry policy: a Triton that drops the first requests (no server can be made
    to fail transiently on demand)."""

    def __init__(self, failures: int, status: str) -> None:
        from odk.triton import TritonSession

        self.session = TritonSession(from_env({"TRITON_RETRIES": "3", "NVIDIA_TRITON_GRPCURI": "127.0.0.1:1"}))
        self.failures, self.status, self.calls = failures, status, 0
        self.session._infer = self._infer  # type: ignore[method-assign]

    def _infer(self, batch):
        from tritonclient.utils import InferenceServerException

        self.calls += 1
        if self.calls <= self.failures:
            raise InferenceServerException(msg="connection reset", status=self.status)
        return batch


def test_transient_triton_errors_are_retried_with_backoff(monkeypatch):
    import odk.triton

    sleeps = []
    monkeypatch.setattr(odk.triton.stopping, "wait", lambda s: sleeps.append(s) or False)  # the backoff
    flaky = _FlakySession(failures=2, status="StatusCode.UNAVAILABLE")
    batch = np.ones((1, 1, 4, 4, 4), dtype=np.float32)
    assert flaky.session.predictor()(batch) is batch
    assert flaky.calls == 3 and sleeps == [0.5, 1.0]
    flaky.session.close()


def test_permanent_triton_errors_are_not_retried(monkeypatch):
    import odk.triton
    from odk.errors import TritonUnavailable

    monkeypatch.setattr(odk.triton.time, "sleep", lambda s: None)
    flaky = _FlakySession(failures=1, status="StatusCode.INVALID_ARGUMENT")
    with pytest.raises(TritonUnavailable, match="connection reset"):
        flaky.session.predictor()(np.ones((1, 1, 4, 4, 4), dtype=np.float32))
    assert flaky.calls == 1
    flaky.session.close()
