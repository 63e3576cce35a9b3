"""Reading a model repository the way Triton does (config.pbtxt via the ModelConfig protobuf)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_model import CONFIG, NAME, write_tiny_repository

from kit.triton.repository import read_repository


def _repo(tmp_path: Path, config: str = CONFIG, name: str = NAME, versions=(1,)) -> Path:
    root = write_tiny_repository(tmp_path / "models", name=name, version=versions[0], config=config)
    for v in versions[1:]:
        shutil.copytree(root / name / str(versions[0]), root / name / str(v))
    return root


def test_contract_model_is_read_in_full(tmp_path):
    repo = read_repository(_repo(tmp_path))
    assert repo.unservable == ()
    (spec,) = repo.models
    assert (spec.name, spec.version, spec.max_batch_size) == (NAME, 1, 4)
    assert [(t.name, t.triton_dtype, t.dims) for t in spec.inputs] == [("NV_MODEL_INPUT", "FP32", (1, 96, 96, 96))]
    assert [(t.name, t.triton_dtype, t.dims) for t in spec.outputs] == [("NV_MODEL_OUTPUT", "FP32", (3, 96, 96, 96))]
    assert spec.inputs[0].np_dtype == np.float32
    assert spec.parameters == {"spacing_mm": "2.5,2.5,2.5", "hu_window": "-200,300",
                               "labels": "background,liver,lesion", "output_activation": "softmax", "axes": "RAS"}
    assert spec.batching is None and spec.instance_count == 1


def test_latest_version_is_served_and_older_ones_are_named(tmp_path):
    config = CONFIG + "version_policy: { all { } }\n"
    repo = read_repository(_repo(tmp_path, config=config, versions=(1, 3)))
    assert [m.version for m in repo.models] == [3]
    assert [u.name for u in repo.unservable] == [f"{NAME}/1"]


def test_default_policy_serves_latest_only(tmp_path):
    repo = read_repository(_repo(tmp_path, versions=(2, 10)))
    assert [m.version for m in repo.models] == [10]  # numeric, not lexical, order
    assert repo.unservable == ()


def test_dynamic_batching_and_instances_are_read(tmp_path):
    config = CONFIG + ("dynamic_batching { preferred_batch_size: [ 2, 4 ] max_queue_delay_microseconds: 500 }\n"
                       "instance_group [ { count: 2 kind: KIND_CPU } ]\n")
    (spec,) = read_repository(_repo(tmp_path, config=config)).models
    assert spec.batching is not None
    assert spec.batching.preferred_batch_size == (2, 4)
    assert spec.batching.max_queue_delay_microseconds == 500
    assert spec.instance_count == 2


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda c: c.replace("onnxruntime_onnx", "tensorrt_plan"), "'tensorrt_plan' cannot run on the embedded"),
        (lambda c: c.replace(f'name: "{NAME}"', 'name: "other"'), "differs from the directory name"),
        (lambda c: c + "this is not protobuf text\n", "does not parse as a Triton ModelConfig"),
        (lambda c: c + 'parameters { key: "workspace-path" value: { string_value: "x" } }\n', "reserved parameter"),
        (lambda c: c + "sequence_batching { }\n", "sequence_batching"),
    ],
    ids=["tensorrt_plan", "name_mismatch", "parse_error", "reserved_parameter", "sequence_batching"],
)
def test_unservable_models_are_named_with_the_reason(tmp_path, edit, reason):
    root = _repo(tmp_path)
    write_tiny_repository(root, name="good_model")
    config = root / NAME / "config.pbtxt"
    config.write_text(edit(config.read_text()))
    repo = read_repository(root)
    assert repo.names == ["good_model"]
    (bad,) = repo.unservable
    assert bad.name == NAME and reason in bad.reason


def test_missing_model_file_and_config_are_reported(tmp_path):
    root = _repo(tmp_path)
    (root / NAME / "1" / "model.onnx").unlink()
    (root / "no_config" / "1").mkdir(parents=True)
    (root / "no_versions").mkdir()
    (root / "no_versions" / "config.pbtxt").write_text(CONFIG.replace(NAME, "no_versions"))
    (root / ".hidden").mkdir()
    (root / "README.txt").write_text("not a model")
    repo = read_repository(root)
    assert repo.models == ()
    reasons = {u.name: u.reason for u in repo.unservable}
    assert set(reasons) == {NAME, "no_config", "no_versions"}
    assert "model.onnx is missing" in reasons[NAME]
    assert "no config.pbtxt" in reasons["no_config"]
    assert "no version directory" in reasons["no_versions"]


def test_missing_repository_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_repository(tmp_path / "nope")


def test_a_fixed_batch_dimension_is_refused_as_triton_refuses_it(tmp_path):
    """An ONNX export without dynamic_axes has batch 1 fixed in its graph: with max_batch_size > 0 Triton's
    onnxruntime backend does not load it, and the embedded server says why before serving it."""
    import onnx
    from tiny_model import tiny_onnx

    from kit.triton.server import check_models

    repo = _repo(tmp_path)
    model = tiny_onnx()
    for tensor in (*model.graph.input, *model.graph.output):
        tensor.type.tensor_type.shape.dim[0].dim_value = 1  # what torch.onnx.export writes without dynamic_axes
    onnx.save(model, str(repo / NAME / "1" / "model.onnx"))
    ok, bad = check_models(read_repository(repo).models, 1)
    assert ok == [] and len(bad) == 1
    assert "input 'NV_MODEL_INPUT' has a fixed batch dimension 1 in the graph" in str(bad[0])
    assert "output 'NV_MODEL_OUTPUT' has a fixed batch dimension 1" in str(bad[0])
    assert "dynamic_axes" in str(bad[0])
    ok, bad = check_models(read_repository(_repo(tmp_path / "dynamic")).models, 1)  # the tiny model's own: dynamic
    assert len(ok) == 1 and bad == []
