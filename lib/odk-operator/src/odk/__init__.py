"""odk — the operator library of the Operator Development Kit.

The machinery every operator shares, separated from the operators themselves (app/): studies found and
read with their geometry, canonical orientation and resampling with their exact inverse, intensity
transforms, a Triton session (gRPC or shared memory, readiness, model checks, retries, deadlines) with
sliding-window and plain batched inference, study outputs committed atomically, the study-vs-run failure
semantics, signals and exit codes, and the ``clara`` driver wiring. An operator is one file that writes its
own steps with these; docs/operator-library.md documents every name below with an example.

>>> import odk
>>> def prepare(session): return odk.WindowModel.of(session.spec, ndim=3)
>>> def process(study, session, model): ...   # read, pre-process, infer, post-process, write
>>> raise SystemExit(odk.main(odk.study_operator(process, prepare)))

Names are imported when first used, so an operator pays only for what it uses (register-results never
imports nibabel or tritonclient).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

# public name -> the module of this package that defines it
_WHERE = {
    # the entry point and the study loop
    "main": "operator", "study_operator": "operator", "run_studies": "operator", "Run": "operator",
    "summary_line": "operator",
    "OperatorError": "operator",
    # configuration from the environment
    "OperatorConfig": "config", "ConfigError": "config", "from_env": "config", "flag": "config",
    "number": "config", "number_list": "config", "log_level": "config", "triton_url": "config",
    # failures
    "StudyError": "errors", "RunError": "errors", "TritonUnavailable": "errors", "Interrupted": "errors",
    "shown": "errors",
    "check_stop": "stopping",
    # files: studies, atomic outputs
    "Study": "files", "RunSummary": "files", "find_studies": "files", "files_under": "files",
    "unsafe_reason": "files", "is_nifti": "files", "stem": "files", "atomic_write_bytes": "files",
    "atomic_write_parts": "files", "StudyWriter": "files", "check_writable": "files",
    "write_label_map": "outputs",
    # NIfTI
    "Volume": "nifti", "read_volume": "nifti", "read_header": "nifti", "label_image": "nifti",
    "label_bytes": "nifti",
    # geometry, intensities, label post-processing
    "Geometry": "transforms", "to_model_grid": "transforms", "forward": "transforms",
    "inverse_labels": "transforms", "labels_to_model": "transforms", "canonical_ornt": "transforms",
    "to_canonical": "transforms", "from_canonical": "transforms", "voxel_spacing": "transforms",
    "canonical_spacing": "transforms",
    "model_grid_shape": "transforms", "resampled_shape": "transforms", "resample_linear": "transforms",
    "resample_nearest": "transforms", "hu_window": "transforms", "zscore": "transforms",
    "argmax_labels": "transforms", "keep_largest_component": "transforms", "label_counts": "transforms",
    "volumes_ml": "transforms",
    # inference over windows, slices and batches
    "sliding_window": "windows", "window_starts": "windows", "slicewise": "windows",
    "predict_batched": "windows",
    # checks before the work
    "check_finite": "guards", "check_working_memory": "guards", "working_memory_mb": "guards",
    "ct_warnings": "guards", "memory_limit_mb": "guards", "check_memory": "guards",
    # the model and Triton
    "ModelSpec": "model", "WindowModel": "model", "ModelMismatch": "model", "parse_config": "model",
    "available_versions": "model", "select_versions": "model", "served_version": "model",
    "model_labels": "model", "build_spec": "model", "served_engine": "model",
    "TritonSession": "triton", "is_local_address": "triton",
    # pictures
    "render_overlay": "overlay", "colour_of": "overlay", "PALETTE": "overlay",
    # the report
    "Timer": "report", "StudyResult": "report", "LabelMapResult": "report", "LabelStats": "report",
    "label_volumes": "report", "read_result": "report", "result_of": "report",
}
_ALIASES = {"check_stop": "check", "render_overlay": "render"}
__all__ = [*sorted(_WHERE), "__version__"]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'odk' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), _ALIASES.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
