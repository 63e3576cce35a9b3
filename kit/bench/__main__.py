"""python -m kit.bench: the operator (shm, gRPC) vs. the limit vs. MONAI on phantom CTs, then the DICOM figures
(reader vs dcm2niix, SEG writer, storescu -> SEG in Orthanc latency); table + one JSON."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

from kit.bench import dicom, dicom_latency, report
from kit.bench.measure import BenchError, median_stages
from kit.bench.model import BenchModel, load_model
from kit.bench.runners import Job, run_operator, run_worker
from kit.bench.serving import embedded_triton
from kit.bench.transport import round_trips
from kit.bench.volumes import SIZES, phantom_study
from kit.dicom.config import DEFAULT_IDLE_S
from kit.paths import ROOT
from kit.triton.embedded import StartError
from odk import (
    ConfigError,
    OperatorConfig,
    canonical_ornt,
    canonical_spacing,
    from_env,
    resampled_shape,
    stem,
    voxel_spacing,
    window_starts,
)

log = logging.getLogger("kit.bench")


def _windows(study: Path, model: BenchModel, overlap: float) -> int:
    import nibabel as nib

    img = nib.load(study)
    ornt = canonical_ornt(img.affine)
    spacing = canonical_spacing(voxel_spacing(img.affine), ornt)
    shape = canonical_spacing(img.shape[:3], ornt)  # the same reordering, applied to the shape
    m_shape = resampled_shape((int(shape[0]), int(shape[1]), int(shape[2])), spacing, model.spacing_mm)
    return len(window_starts(m_shape, model.roi, overlap))


def _log_run(study: str, who: str, i: int, r: dict) -> None:
    log.info("%s %s run %d: total %.2f s, wall %.2f s, RSS %.0f MB", study, who, i, r["timings_s"]["total"],
             r["wall_s"], r["peak_rss_mb"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m kit.bench", description=__doc__)
    p.add_argument("--sizes", default="small,ct", help=f"comma-separated, of {', '.join(SIZES)}")
    p.add_argument("--repeats", type=int, default=3, help="operator and limit runs per study (median)")
    p.add_argument("--monai-repeats", type=int, default=3, help="MONAI runs per study (0: skip the peer)")
    p.add_argument("--transport-repeats", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--model-dir", type=Path, default=ROOT / "local/models/segmentation_liver_v1")
    p.add_argument("--cache", type=Path, default=ROOT / ".cache/bench")
    p.add_argument("--out", type=Path, default=ROOT / ".run/bench")
    p.add_argument("--no-profile", action="store_true", help="skip the pyinstrument run of the operator")
    p.add_argument("--dicom-repeats", type=int, default=3, help="DICOM reader/dcm2niix/SEG runs (0: skip)")
    p.add_argument("--dicom-size", default="ct", choices=list(SIZES), help="the phantom the DICOM series is of")
    p.add_argument("--dicom-latency-repeats", type=int, default=3,
                   help="storescu -> SEG in Orthanc round trips per LISTEN_IDLE_S (0: skip)")
    p.add_argument("--dicom-idle-s", type=dicom_latency.idle_list, default=[DEFAULT_IDLE_S, 0.0],
                   help=f"LISTEN_IDLE_S values of the latency, comma-separated (default: {DEFAULT_IDLE_S:g},0)")
    return p.parse_args(argv)


def _header(args: argparse.Namespace, model: BenchModel, cfg: OperatorConfig, stamp: str) -> dict:
    return {"timestamp": stamp, "machine": report.machine(), "commit": report.commit(),
            "model": {"name": model.name, "source": str(args.model_dir),
                      "onnx_sha256": hashlib.sha256(model.onnx_file.read_bytes()).hexdigest(), "roi": model.roi,
                      "spacing_mm": model.spacing_mm, "hu_window": model.hu_window,
                      "max_batch_size": model.max_batch_size},
            "settings": {"overlap": cfg.overlap, "blend": cfg.blend,
                         "batch_size": model.spec.windows_per_request(cfg.batch_size),
                         "largest_component": cfg.largest_component, "repeats": args.repeats,
                         "monai_repeats": args.monai_repeats},
            "studies": {}}


def _transport(url: str, model: BenchModel, repeats: int) -> dict:
    shm = round_trips(url, model, "shm", repeats)
    grpc = round_trips(url, model, "grpc", repeats)
    speedup = round(grpc.round_trip_s / shm.round_trip_s, 2)
    # One window per request too: the slope between 1 and N windows is the per-window cost of each path.
    one = {t: round_trips(url, model, t, repeats, windows=1) for t in ("shm", "grpc")}
    n = shm.batch - 1
    per_window = {t: round((full.round_trip_s - one[t].round_trip_s) / n, 4) if n else None
                  for t, full in (("shm", shm), ("grpc", grpc))}
    log.info("window traffic: shm %.3f s, gRPC %.3f s per round trip (%.1fx)", shm.round_trip_s, grpc.round_trip_s,
             speedup)
    return {"shm": shm.as_dict(), "grpc": grpc.as_dict(), "shm_speedup_over_grpc": speedup,
            "one_window": {t: r.as_dict() for t, r in one.items()}, "per_window_s": per_window,
            "target": report.check_targets({"shm_speedup_over_grpc": speedup})["shm_speedup_over_grpc"]}


def _agreement(a: Path, b: Path) -> float:
    """Fraction of voxels with the same label in two label maps (both on the input grid)."""
    import nibabel as nib
    import numpy as np

    x, y = (np.asanyarray(nib.load(p).dataobj).squeeze() for p in (a, b))
    return round(float((x == y).mean()), 5) if x.shape == y.shape else 0.0


ENGINES = ("onnxruntime", "openvino")


def _run_study(name: str, job: Job, url: str, args: argparse.Namespace) -> dict:
    """Every contender on one study, interleaved so a shared machine's background load hits all alike. The
    limit is measured with each in-process engine on the same windows; the faster one is the limit."""
    runs: dict[str, list[dict]] = {"shm": [], "grpc": [], "monai": [], **{f"limit_{e}": [] for e in ENGINES}}
    for i in range(max(args.repeats, args.monai_repeats)):
        if i < args.repeats:
            for transport in ("shm", "grpc"):
                runs[transport].append(run_operator(job, url, transport, f"{transport}-{i}"))
                _log_run(name, f"operator {transport}", i, runs[transport][-1])
            for engine in ENGINES:
                runs[f"limit_{engine}"].append(run_worker(job, "kit.bench.limit", f"limit-{engine}-{i}",
                                                          ("--engine", engine)))
                _log_run(name, f"limit ({engine})", i, runs[f"limit_{engine}"][-1])
        if i < args.monai_repeats:
            runs["monai"].append(run_worker(job, "kit.bench.peer", f"monai-{i}"))
            _log_run(name, "MONAI", i, runs["monai"][-1])
    study: dict = {f"operator_{t}": {"summary": report.summarise(runs[t]), "runs": runs[t]} for t in ("shm", "grpc")}
    for engine in ENGINES:
        key = f"limit_{engine}"
        study[key] = {"summary": report.summarise(runs[key]), "runs": runs[key], "engine": engine,
                      "read_variants_s": median_stages([r["read_variants_s"] for r in runs[key]]),
                      "encode_variants_s": median_stages([r["encode_variants_s"] for r in runs[key]])}
    diffs = [r["max_abs_diff_vs_onnxruntime"] for r in runs["limit_openvino"] if r.get("max_abs_diff_vs_onnxruntime")
             is not None]
    study["limit_openvino"]["max_abs_diff_vs_onnxruntime"] = max(diffs) if diffs else None
    fastest = min(ENGINES, key=lambda e: study[f"limit_{e}"]["summary"]["work_s"])
    study["limit"] = study[f"limit_{fastest}"]  # the limit: the faster in-process engine
    seg = f"{stem(job.study)}_seg.nii.gz"
    op_seg = job.work / "operator-shm-0" / seg
    study["label_agreement_with_operator"] = {
        "operator_grpc": _agreement(op_seg, job.work / "operator-grpc-0" / seg),
        **{f"limit_{e}": _agreement(op_seg, job.work / f"limit-{e}-0-out" / seg) for e in ENGINES}}
    if runs["monai"]:
        study["monai"] = {"summary": report.summarise(runs["monai"]), "runs": runs["monai"]}
        study["label_agreement_with_operator"]["monai"] = _agreement(op_seg, job.work / "monai-0-out" / seg)
    return study


def bench(args: argparse.Namespace) -> dict:
    if args.monai_repeats > 0 and not all(importlib.util.find_spec(m) for m in ("torch", "monai", "skimage")):
        raise BenchError("torch/MONAI are not installed in this interpreter; run 'make bench' (it uses .venv-bench)"
                         " or pass --monai-repeats 0")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    work = args.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    # One snapshot of the model for every contender, even if the repository is rewritten meanwhile.
    model = load_model(shutil.copytree(args.model_dir, work / "model" / args.model_dir.name))
    cfg = from_env()
    result = _header(args, model, cfg, stamp)
    sizes = [SIZES[s.strip()] for s in args.sizes.split(",") if s.strip()]
    jobs: dict[str, Job] = {}
    for size in sizes:
        log.info("phantom %s %s at %s mm (cached in %s)", size.name, size.shape, size.spacing, args.cache)
        path = phantom_study(args.cache, size, args.seed)
        jobs[size.name] = Job(study=path, model=model, cfg=cfg, work=work / size.name)
        result["studies"][size.name] = {"file": str(path), "file_mb": round(path.stat().st_size / 2**20, 1),
                                        "shape": list(size.shape), "spacing_mm": list(size.spacing),
                                        "float32_mb": round(size.float32_mb, 1),
                                        "windows": _windows(path, model, cfg.overlap)}
    log.info("starting the embedded Triton (%s + the no-compute transport model)", model.name)
    with embedded_triton(model, work) as triton:
        url = triton.grpc_url
        result["transport"] = _transport(url, model, args.transport_repeats)
        largest = sizes[-1].name
        if args.no_profile:
            run_operator(jobs[largest], url, "shm", "warmup")
        else:
            log.info("profiling the operator on %s (pyinstrument; also warms Triton up)", largest)
            profile = args.out / f"{stamp}-profile-operator-{largest}.txt"
            run_operator(jobs[largest], url, "shm", "profile", profile_to=profile)
            result["profile"] = str(profile)
        for name, job in jobs.items():
            study = result["studies"][name]
            study.update(_run_study(name, job, url, args))
            study["ratios"] = report.study_ratios(study)
            study["targets"] = report.check_targets(study["ratios"], name)
    if args.dicom_repeats > 0:
        result["dicom"] = dicom.bench_dicom(args.cache, work / "dicom", args.dicom_repeats, args.seed,
                                           args.dicom_size)
    if args.dicom_latency_repeats > 0:
        result["dicom_latency"] = _latency(model, work, args)
    return result


def _latency(model: BenchModel, work: Path, args: argparse.Namespace) -> dict:
    """The DICOM latency on the bench's model snapshot, after the bench's own Triton is gone; a failure is
    recorded (and fails the run) instead of losing the figures measured before it."""
    log.info("DICOM latency: storescu -> SEG in Orthanc, LISTEN_IDLE_S %s, %d pairs each",
             ",".join(f"{v:g}" for v in args.dicom_idle_s), args.dicom_latency_repeats)
    try:
        return dicom_latency.bench_latency(model.model_dir.parent, work / "dicom-latency",
                                           args.dicom_latency_repeats, args.dicom_idle_s)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        log.error("DICOM latency failed: %s", exc)
        return {"error": str(exc) or type(exc).__name__}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[bench] %(message)s")
    args = parse_args(argv)
    try:
        result = bench(args)
    except (BenchError, StartError, ConfigError, FileNotFoundError, ValueError, RuntimeError) as exc:
        head, _, detail = (str(exc) or type(exc).__name__).partition("\n")
        if detail:
            print(detail, file=sys.stderr)
        print(f"[odk] error: bench failed: {head}", file=sys.stderr)
        log.debug("details", exc_info=True)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{result['timestamp']}.json"
    text = json.dumps(result, indent=2) + "\n"
    path.write_text(text)
    (args.out / "latest.json").write_text(text)
    m = result["machine"]
    print(f"\nmachine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']:.0f} GiB RAM; model {result['model']['name']}, "
          f"overlap {result['settings']['overlap']}, blend {result['settings']['blend']}, batch "
          f"{result['settings']['batch_size']}\n")
    print(report.table(result))
    if result.get("profile"):
        print(f"\noperator profile (pyinstrument): {result['profile']}")
    print(f"results: {path} (also {args.out / 'latest.json'})\n")
    latency = result.get("dicom_latency")
    if latency and "settings" in latency:
        dicom_latency.print_table(latency)
    print("ratios (work = read+preprocess+inference+postprocess+write, medians; wall = process start to exit):")
    for line in report.verdict_lines(result) + dicom.report_lines(result.get("dicom")):
        print(line)
    for line in dicom_latency.verdict_lines(latency):
        print(line)
    return 1 if latency and "error" in latency else 0


if __name__ == "__main__":
    raise SystemExit(main())
