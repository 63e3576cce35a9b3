"""The one place the kit reaches into PyTriton's private API (pinned nvidia-pytriton==0.7.0).

PyTriton's public ModelConfig has no field for a model's config.pbtxt `parameters`. Its Triton object keeps
the bound models in ``_model_manager.models``, and each model builds its generated Triton config with
``_get_triton_model_config()``, whose ``backend_parameters`` map is published in the served model config.
tests/test_private_apis.py fails loudly when a PyTriton version changes any of that.
"""

from __future__ import annotations

from collections.abc import Mapping


class PrivateApiChanged(RuntimeError):
    """A pinned library no longer has the private attributes this module relies on."""


def _changed(what: str) -> PrivateApiChanged:
    return PrivateApiChanged(f"PyTriton has no {what} any more; update kit/triton/pytriton_private.py for this "
                             "nvidia-pytriton version")


def publish_parameters(triton: object, name: str, version: int, parameters: Mapping[str, str]) -> None:
    """Add ``parameters`` to the served config of the bound model ``name``/``version``."""
    manager = getattr(triton, "_model_manager", None)
    if manager is None or not hasattr(manager, "models"):
        raise _changed("Triton._model_manager.models")
    for model in manager.models:
        if model.model_name == name and model.model_version == version:
            get_config = getattr(model, "_get_triton_model_config", None)
            if get_config is None:
                raise _changed("Model._get_triton_model_config()")
            config = get_config()
            if not isinstance(getattr(config, "backend_parameters", None), dict):
                raise _changed("TritonModelConfig.backend_parameters")
            config.backend_parameters.update(parameters)
            return
    raise RuntimeError(f"model {name} was not bound")
