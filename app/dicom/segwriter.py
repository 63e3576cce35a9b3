"""``python -u -m app.dicom.segwriter``: label maps + their DICOM series -> DICOM SEG, under the pipeline driver.

Inputs (any number of entries, told apart by content): the original DICOM instances, the dicom-reader's
output (``<stem>.dicom.json`` sidecars) and the segmentation's output (``<stem>_seg.nii.gz`` and
``<stem>.json``). Env: SEG_MODEL_CONFIG, a config.pbtxt in its model directory, whose name, ``labels`` and
served version are used when a label map has no segmentation report beside it. Exits non-zero when a label map
could not be written as SEG.
"""

from __future__ import annotations

import os
from pathlib import Path

import odk
from odk.dicom import Algorithm, write_all


def model_config(path: str) -> Algorithm | None:
    """Name, served version and labels of the model whose config.pbtxt is ``path``, read as the operator reads
    them (odk): the version is the one Triton serves from the version directories beside it."""
    if not path:
        return None
    # Only here: the model-config parser (tritonclient.grpc, protobuf) costs ~0.2 s of start-up, and a label
    # map with its segmentation report beside it (as the pipeline gives) never needs it.
    from google.protobuf.text_format import ParseError

    config_path = Path(path)
    try:
        cfg = odk.parse_config(config_path)
    except (OSError, ParseError) as exc:
        raise odk.ConfigError(f"SEG_MODEL_CONFIG={path}: not a readable config.pbtxt ({exc})") from None
    labels = odk.model_labels(cfg)
    if labels is None:
        raise odk.ConfigError(f"SEG_MODEL_CONFIG={path} has no 'labels' parameter")
    version = odk.served_version(cfg, config_path.parent)
    if version is None:
        raise odk.ConfigError(f"SEG_MODEL_CONFIG={path}: no version directory (e.g. 1/) beside it that its "
                          "version_policy selects, so Triton would serve no version of this model")
    return Algorithm(name=cfg.name or config_path.parent.name, version=str(version), labels=labels)


def execute(run: odk.Run) -> None:
    fallback = model_config(os.environ.get("SEG_MODEL_CONFIG", ""))
    summary = write_all(list(run.inputs), run.output, fallback)
    if summary.failed:
        raise odk.OperatorError(f"{len(summary.failed)} of {len(summary.failed) + len(summary.written)} label maps "
                              "not written as SEG; the FAILED lines above say why")
    if not summary.written:
        raise odk.OperatorError("no label maps (<stem>_seg.nii.gz) under the inputs; give the segmentation's "
                              "output, the dicom-reader's output and the DICOM series as inputs")


if __name__ == "__main__":
    raise SystemExit(odk.main(execute, example_input="payload:/input/dicom;dicom-reader/volumes:/input/volumes;"
                              "segmentation/segmentation:/input/labels", example_output="dicom-seg-writer/seg:/output"))
