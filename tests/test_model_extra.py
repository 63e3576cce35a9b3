"""The lesion classifier (classification_lesion_v1) and the 2D slice model (segmentation_liver_2d_v1): their
repository entries pass Triton's protobuf and the kit's own repository check, the graphs take a dynamic batch
and output probabilities, and their predictions are sane on phantoms with and without lesions (in-process
onnxruntime, along the preprocessing their config.pbtxt declares)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from kit.phantom import LESION, LIVER, make_phantom, reorient
from kit.summary import dice
from kit.train.config import (
    CLASSIFIER_HELDOUT_SEED_BASE,
    CLASSIFIER_NAME,
    CLASSIFIER_TRAIN_SEED_BASE,
    SLICES_HELDOUT_SEED_BASE,
    SLICES_NAME,
    SLICES_TRAIN_SEED_BASE,
    ClassifierConfig,
    SliceConfig,
)
from kit.train.data import prepare_resized, prepare_spacing
from kit.train.evaluate import auc, lesion_probability, load_repo_model, segment_slices
from kit.triton.repository import read_model, read_repository

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "local" / "models"
EXPECTED = {  # name: (input dims, output dims, max_batch_size, parameters)
    CLASSIFIER_NAME: ([1, 64, 64, 64], [2], 8, {
        "resize_shape": "64,64,64", "hu_window": "-200,300", "axes": "RAS", "labels": "no_lesion,lesion",
        "output_activation": "softmax", "threshold": "0.5"}),
    SLICES_NAME: ([1, 128, 128], [3, 128, 128], 16, {
        "spacing_mm": "2.5,2.5,0", "hu_window": "-200,300", "axes": "RAS", "labels": "background,liver,lesion",
        "label_nesting": "organ", "output_activation": "softmax"}),
}


@pytest.fixture(scope="module")
def classifier():
    return load_repo_model(MODELS / CLASSIFIER_NAME)


@pytest.fixture(scope="module")
def slices():
    return load_repo_model(MODELS / SLICES_NAME)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_entry_parses_and_passes_the_repository_check(name: str) -> None:
    in_dims, out_dims, max_batch, params = EXPECTED[name]
    config = text_format.Parse((MODELS / name / "config.pbtxt").read_text(), mc.ModelConfig())
    assert (config.name, config.platform, config.max_batch_size) == (name, "onnxruntime_onnx", max_batch)
    assert list(config.input[0].dims) == in_dims and list(config.output[0].dims) == out_dims
    assert {k: v.string_value for k, v in config.parameters.items()} == params
    served, problems = read_model(MODELS / name)
    assert not problems and [(m.name, m.version) for m in served] == [(name, 1)]
    repo = read_repository(MODELS)
    assert name in repo.names and not repo.unservable
    onnx_file = MODELS / name / "1" / "model.onnx"
    assert onnx_file.stat().st_size < 2_000_000
    graph = onnx.load(str(onnx_file)).graph
    for value in (graph.input[0], graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param, f"{value.name}: the batch axis must be dynamic"


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("batch", [1, 3])
def test_graph_outputs_probabilities_for_any_batch(name: str, batch: int) -> None:
    model = load_repo_model(MODELS / name, threads=1)
    in_dims, out_dims, _, _ = EXPECTED[name]
    x = np.random.default_rng(0).uniform(0, 1, size=(batch, *in_dims)).astype(np.float32)
    y = model.run(x)
    assert y.shape == (batch, *out_dims) and y.dtype == np.float32
    assert np.allclose(y.sum(axis=1), 1.0, atol=1e-4) and y.min() >= 0.0


def test_heldout_seeds_are_not_training_seeds() -> None:
    train = set(range(CLASSIFIER_TRAIN_SEED_BASE, CLASSIFIER_TRAIN_SEED_BASE + ClassifierConfig().phantoms))
    assert not train & set(range(CLASSIFIER_HELDOUT_SEED_BASE, CLASSIFIER_HELDOUT_SEED_BASE + 1000))
    assert SLICES_TRAIN_SEED_BASE + SliceConfig().phantoms <= SLICES_HELDOUT_SEED_BASE


def test_resize_contract_is_the_whole_extent_in_canonical_order() -> None:
    p = make_phantom(3, (96, 80, 24), (4.0, 4.5, 8.0))
    ras = prepare_resized(p.ct, p.affine, (64, 64, 64), (-200.0, 300.0))
    lps, affine = reorient(p.ct, p.affine, "LPS")
    assert ras.shape == (64, 64, 64) and ras.dtype == np.float32 and 0.0 <= ras.min() <= ras.max() <= 1.0
    np.testing.assert_array_equal(prepare_resized(lps, affine, (64, 64, 64), (-200.0, 300.0)), ras)


def test_zero_spacing_keeps_the_axis() -> None:
    p = make_phantom(3, (96, 80, 24), (1.25, 1.25, 7.0))
    vol, geom = prepare_spacing(p.ct, p.affine, (2.5, 2.5, 0.0), (-200.0, 300.0))
    assert vol.shape == (48, 40, 24) and geom.model_shape == (48, 40, 24)


def test_auc_counts_ties_half() -> None:
    assert auc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert auc([0.5, 0.5], [1, 0]) == 0.5


def test_classifier_gives_one_probability_per_study_whatever_its_storage(classifier) -> None:
    """With and without lesions: a probability, the same however the study is stored and whether it is sent
    alone or batched (its accuracy is measured by make evaluate: see the model card)."""
    grid = ((320, 320, 60), (1.0, 1.0, 3.0))
    seed = CLASSIFIER_HELDOUT_SEED_BASE + 1000  # held out, outside the evaluation's seeds too
    studies = []
    for lesions in (0, 4):
        p = make_phantom(seed, *grid, lesions=lesions)
        assert np.any(p.labels == LESION) == bool(lesions)
        probs = [lesion_probability(classifier, *reorient(p.ct, p.affine, o)) for o in ("LPS", "RAS", "PIR")]
        assert all(0.0 <= q <= 1.0 for q in probs)
        np.testing.assert_allclose(probs, probs[0], atol=1e-5)
        studies.append(prepare_resized(p.ct, p.affine, (64, 64, 64), (-200.0, 300.0)))
    batched = classifier.run(np.stack(studies)[:, None])
    alone = np.concatenate([classifier.run(x[None, None]) for x in studies])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    assert not np.allclose(batched[0], batched[1])  # the two studies are told apart at all


def test_slice_model_segments_the_liver_with_and_without_lesions(slices) -> None:
    """The liver, lesions included (the model card says why lesions themselves are not found yet)."""
    seed = SLICES_HELDOUT_SEED_BASE + 1000
    grid = ((320, 320, 56), (0.95, 0.95, 3.5))
    for lesions in (0, 3):
        p = make_phantom(seed, *grid, lesions=lesions)
        ct, affine = reorient(p.ct, p.affine, "LPS")
        truth, _ = reorient(p.labels, p.affine, "LPS")
        assert np.any(truth == LESION) == bool(lesions)
        pred = segment_slices(slices, ct, affine)
        assert pred.shape == truth.shape and pred.dtype == np.uint8
        assert dice(pred > 0, truth > 0) >= 0.85
        assert np.count_nonzero(pred == LESION) < 0.02 * np.count_nonzero(truth == LIVER)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_embedded_triton_serves_the_entry(triton_server, name: str) -> None:
    import tritonclient.grpc as grpcclient

    if Path(triton_server.models_dir).resolve() != MODELS.resolve():
        pytest.skip("the session's Triton serves a stand-in repository (no local/models/segmentation_liver_v1)")
    in_dims, out_dims, _, params = EXPECTED[name]
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    try:
        assert client.is_model_ready(name, "1")
        served = client.get_model_config(name).config
        assert {k: served.parameters[k].string_value for k in params} == params
        x = np.random.default_rng(1).uniform(0, 1, size=(2, *in_dims)).astype(np.float32)
        inp = grpcclient.InferInput("NV_MODEL_INPUT", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        got = client.infer(name, [inp]).as_numpy("NV_MODEL_OUTPUT")
    finally:
        client.close()
    want = load_repo_model(MODELS / name, threads=1).run(x)
    assert got.shape == (2, *out_dims)
    np.testing.assert_allclose(got, want, atol=1e-5)
