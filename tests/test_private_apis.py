"""The private APIs of other libraries the kit relies on, each behind one adapter (app/shm_region.py,
kit/triton/pytriton_private.py): these tests fail loudly when a pinned version changes them."""

from __future__ import annotations

import inspect
import os
import uuid
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm

from kit.triton import pytriton_private
from odk import triton as shm_region

ROOT = Path(__file__).resolve().parents[1]


def _pin(name: str) -> str:
    for file in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / file).read_text().splitlines():
            if line.split("==")[0].split("[")[0].strip().lower() == name:
                return line.split("==", 1)[1].strip()
    raise AssertionError(f"{name} is not pinned")


@pytest.mark.parametrize("dist", ["tritonclient", "nvidia-pytriton"])
def test_the_installed_version_is_the_pinned_one(dist: str) -> None:
    """The adapters were written against these pins; a new version must pass these tests before it is pinned."""
    assert metadata.version(dist) == _pin(dist)


def test_tritonclient_region_name_can_be_unlinked_while_a_view_is_alive() -> None:
    key = f"/odk_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    region = shm.create_shared_memory_region("odk_private_api_test", key, 64)
    try:
        shm.set_shared_memory_region(region, [np.arange(16, dtype=np.float32)])
        view = shm.get_contents_as_numpy(region, np.float32, [16])
        assert Path("/dev/shm" + key).exists()
        shm_region.unlink_region_name(region)
        assert not Path("/dev/shm" + key).exists()
        assert view[3] == 3.0  # the mapping itself lives on with its view
        del view
    finally:
        if Path("/dev/shm" + key).exists():
            shm_region.unlink_region_name(region)
        region._mpsm_handle.close()


def test_tritonclient_adapter_says_what_changed() -> None:
    with pytest.raises(shm_region.PrivateApiChanged, match="_mpsm_handle"):
        shm_region.unlink_region_name(SimpleNamespace())


def test_pytriton_private_attributes_exist() -> None:
    from pytriton.models.manager import ModelManager
    from pytriton.models.model import Model
    from pytriton.triton import TritonBase

    assert "self._model_manager = ModelManager(" in inspect.getsource(TritonBase.__init__)
    assert isinstance(inspect.getattr_static(ModelManager, "models"), property)
    config_source = inspect.getsource(Model._get_triton_model_config)
    assert "backend_parameters" in config_source or "TritonModelConfig" in config_source


def test_pytriton_adapter_says_what_changed() -> None:
    with pytest.raises(pytriton_private.PrivateApiChanged, match="_model_manager"):
        pytriton_private.publish_parameters(SimpleNamespace(), "m", 1, {"k": "v"})


def test_published_parameters_reach_the_served_config(triton_server) -> None:
    """End to end through the real embedded Triton: the model's config.pbtxt parameters are served."""
    client = grpcclient.InferenceServerClient(url=triton_server.grpc_url)
    try:
        served = client.get_model_config(triton_server.model_name).config.parameters
    finally:
        client.close()
    assert {"spacing_mm", "hu_window", "labels"} <= set(served)
