"""The limit: the operator's job with nothing between it and the machine.

The operator's own model-side pipeline (kit.local_model.segment, as app/main.py: the same preprocessing,
window grid, batches and post-processing) run straight through an engine in this process (no Triton, no
transport), and the fastest gzip decoder/encoder available for reading the study and writing the label map.
The engine is onnxruntime or OpenVINO, with the options the embedded Triton uses (kit.triton.onnx_engine); the
bench runs both on the same windows and takes the faster as the limit.

    python -m kit.bench.limit --engine onnxruntime|openvino --input CT.nii.gz --model-dir local/models/<name> \
        --out-dir DIR --json FILE
"""

from __future__ import annotations

import argparse
import gzip
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip

from kit.bench import contender
from kit.bench.model import engine_runner, load_model, ort_session
from kit.local_model import segment
from kit.triton.onnx_engine import ONNXRUNTIME, OPENVINO
from odk import OperatorConfig, Timer, Volume, label_image, stem


def _timed(fn: Callable[[], object]) -> tuple[object, float]:
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def _from_bytes(raw: bytes) -> Volume:
    img = nib.Nifti1Image.from_bytes(raw)
    data = np.asanyarray(img.dataobj)
    return Volume(data=data.reshape(data.shape[:3]), affine=img.affine, header=img.header, klass=type(img))


def _nibabel_load(path: Path) -> Volume:
    img = nib.load(path)
    data = np.asanyarray(img.dataobj)
    return Volume(data=data.reshape(data.shape[:3]), affine=img.affine, header=img.header, klass=type(img))


READERS: dict[str, Callable[[Path], Volume]] = {
    "zlib": lambda p: _from_bytes(gzip.decompress(p.read_bytes())),
    "nibabel": _nibabel_load,
    "isal": lambda p: _from_bytes(igzip.decompress(p.read_bytes())),
}
ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "isal": lambda raw: igzip.compress(raw, compresslevel=1, mtime=0),
    "zlib": lambda raw: gzip.compress(raw, compresslevel=1, mtime=0),
}


def read_fastest(path: Path) -> tuple[Volume, dict[str, float]]:
    """Read the study with every decoder; return the fastest one's volume and each decoder's time."""
    times: dict[str, float] = {}
    best: Volume | None = None
    for name, reader in READERS.items():
        vol, times[name] = _timed(lambda r=reader: r(path))
        if best is None or times[name] <= min(times.values()):
            best = vol  # type: ignore[assignment]
        del vol
    assert best is not None
    return best, times


def write_fastest(dest: Path, labels: np.ndarray, ref: Volume,
                  names: tuple[str, ...]) -> tuple[float, dict[str, float]]:
    """Serialise once, compress with every encoder; the fastest encoder's bytes are written."""
    raw, t_serialise = _timed(lambda: label_image(labels, ref, names).to_bytes())
    times: dict[str, float] = {}
    best: tuple[float, bytes] | None = None
    for name, encode in ENCODERS.items():
        packed, times[name] = _timed(lambda e=encode: e(raw))
        if best is None or times[name] < best[0]:
            best = (times[name], packed)  # type: ignore[assignment]
    assert best is not None
    _, t_file = _timed(lambda: dest.write_bytes(best[1]))
    return t_serialise + best[0] + t_file, times


def run(src: Path, model_dir: Path, out_dir: Path, overlap: float, blend: str, batch_size: int,
        largest_component: bool, engine: str = ONNXRUNTIME) -> dict:
    model = load_model(model_dir)
    session, t_session = _timed(lambda: engine_runner(model.onnx_file, engine))
    out_name = model.output_name
    first: list[np.ndarray] = []  # the first real batch and its output: compared with onnxruntime afterwards

    def predict(batch: np.ndarray) -> np.ndarray:
        out = session.run([out_name], {model.input_name: batch})[0]  # type: ignore[union-attr]
        if not first and batch.any():
            first.extend((batch.copy(), out.copy()))
        return out

    cfg = OperatorConfig(model_name=model.name, overlap=overlap, blend=blend, batch_size=batch_size,
                         largest_component=largest_component, overlay=False)
    batch = model.spec.windows_per_request(batch_size)
    # Warm the session up (first-run allocations), as the long-running Triton is warm for the operator.
    _, t_warmup = _timed(lambda: predict(np.zeros((batch, 1, *model.roi), np.float32)))
    stages: dict[str, float] = {}
    vol, read_times = read_fastest(src)
    stages["read"] = min(read_times.values())
    timer = Timer()
    labels, _ = segment(vol.data, vol.affine, model.spec, predict, cfg, timer)
    stages.update({k: timer.stages[k] for k in ("preprocess", "inference", "postprocess")})
    out_dir.mkdir(parents=True, exist_ok=True)
    name = stem(src)
    stages["write"], write_times = write_fastest(out_dir / f"{name}_seg.nii.gz", labels, vol, model.spec.labels)
    stages["total"] = sum(stages.values())
    diff = None
    if engine != ONNXRUNTIME and first:  # not timed: how far this engine's outputs are from onnxruntime's
        reference = ort_session(model.onnx_file).run([out_name], {model.input_name: first[0]})[0]
        diff = float(np.abs(first[1] - reference).max())
    return {"engine": engine, "max_abs_diff_vs_onnxruntime": diff,
            "timings_s": {k: round(v, 4) for k, v in stages.items()},
            "read_variants_s": {k: round(v, 4) for k, v in read_times.items()},
            "encode_variants_s": {k: round(v, 4) for k, v in write_times.items()},
            "session_s": round(t_session, 4), "warmup_s": round(t_warmup, 4), "batch_size": batch,
            "labels_voxels": [int(c) for c in np.bincount(labels.ravel(), minlength=len(model.labels))]}


def main(argv: list[str] | None = None) -> int:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--engine", choices=(ONNXRUNTIME, OPENVINO), default=ONNXRUNTIME)
    known, rest = pre.parse_known_args(argv)

    def run_with_engine(*args: object) -> dict:
        return run(*args, engine=known.engine)  # type: ignore[arg-type]

    return contender.main("python -m kit.bench.limit", __doc__, run_with_engine, rest)


if __name__ == "__main__":
    raise SystemExit(main())
