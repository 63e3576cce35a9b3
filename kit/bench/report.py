"""Summaries, ratios, targets and the printed table of a bench run."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from kit.bench.measure import median, median_stages
from kit.paths import ROOT

STAGES = ("read", "preprocess", "inference", "postprocess", "write")
TARGETS = {
    "operator_shm/limit": 1.25,  # at most: the limit is the faster in-process engine (onnxruntime, OpenVINO)
    "operator_shm/monai": 0.5,  # at most (0.25 on the CT: STUDY_TARGETS)
    "peak_rss/float32_input": 3.0,  # at most
    "shm_speedup_over_grpc": 5.0,  # at least
    "reader/dcm2niix": 3.0,  # at most: the DICOM reader's wall time against dcm2niix's on the same series
    "latency/operator_alone": 1.5,  # at most: storescu start -> SEG in Orthanc against the operator alone
}


# Tighter bounds for one study: on the 512x512x200 CT the operator must take at most a quarter of MONAI's time.
STUDY_TARGETS = {"ct": {"operator_shm/monai": 0.25}}


def work_s(timings: dict[str, float]) -> float:
    """The five stages every contender does (the operator's QA overlay is not one of them)."""
    return sum(timings.get(s, 0.0) for s in STAGES)


def summarise(runs: Sequence[dict]) -> dict:
    """Median over runs of every stage, the work sum, the wall time (less any overlay) and peak RSS."""
    timings = median_stages([r["timings_s"] for r in runs])
    walls = [r["wall_s"] - r["timings_s"].get("overlay", 0.0) for r in runs]
    return {"runs": len(runs), "timings_s": timings, "work_s": round(median([work_s(r["timings_s"]) for r in runs]), 4),
            "wall_s": round(median(walls), 4), "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1)}


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def study_ratios(study: dict) -> dict:
    out: dict[str, float] = {}
    shm = study.get("operator_shm", {}).get("summary")
    for peer in ("limit", "monai"):
        other = study.get(peer, {}).get("summary")
        if shm and other:
            out[f"operator_shm/{peer}"] = ratio(shm["work_s"], other["work_s"])
            out[f"operator_shm/{peer} (wall)"] = ratio(shm["wall_s"], other["wall_s"])
    shm_runs = study.get("operator_shm", {}).get("runs") or []
    for peer in ("limit", "monai"):
        # Run i of each contender ran back to back: the median of per-repeat ratios cancels slow drifts of a
        # shared machine's background load that the ratio of medians does not.
        pairs = list(zip(shm_runs, study.get(peer, {}).get("runs") or [], strict=False))
        if pairs:
            out[f"operator_shm/{peer} (paired)"] = round(median([work_s(a["timings_s"]) / work_s(b["timings_s"])
                                                                 for a, b in pairs]), 3)
    grpc = study.get("operator_grpc", {}).get("summary")
    if grpc and study.get("limit"):
        out["operator_grpc/limit"] = ratio(grpc["work_s"], study["limit"]["summary"]["work_s"])
    if shm:
        out["peak_rss/float32_input"] = ratio(shm["peak_rss_mb"], study["float32_mb"])
    if shm and grpc:
        out["grpc_inference/shm_inference"] = ratio(grpc["timings_s"]["inference"], shm["timings_s"]["inference"])
    return out


def check_targets(ratios: dict[str, float], study: str = "") -> dict[str, dict]:
    checks = {}
    for key, bound in {**TARGETS, **STUDY_TARGETS.get(study, {})}.items():
        if key not in ratios:
            continue
        value = ratios[key]
        ok = value >= bound if key == "shm_speedup_over_grpc" else value <= bound
        checks[key] = {"value": value, "target": (">= " if key == "shm_speedup_over_grpc" else "<= ") + str(bound),
                       "met": bool(ok)}
    return checks


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {}
    for dist in ("onnxruntime", "openvino", "nvidia-pytriton", "tritonclient", "numpy", "nibabel", "isal", "monai",
                 "torch"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "ram_gb": round(mem_gb, 1), "python": platform.python_version(),
            "kernel": platform.release(), "versions": versions}


def commit() -> str:
    """The checkout's commit (short), with "-dirty" when tracked files differ from it; "unknown" without git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False,
                              timeout=30).stdout.strip()

    try:
        rev = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}-dirty" if rev and dirty else rev or "unknown"


def _row(name: str, s: dict) -> str:
    t = s["timings_s"]
    cells = [f"{t.get(k, float('nan')):8.2f}" for k in STAGES]
    return (f"  {name:<17}" + "".join(cells) + f"{s['work_s']:8.2f}{s['wall_s']:8.2f}{s['peak_rss_mb']:9.0f}"
            + f"  (n={s['runs']})")


def table(result: dict) -> str:
    lines = []
    header = f"  {'':<17}" + "".join(f"{h:>8}" for h in ("read", "prep", "infer", "post", "write", "work", "wall",
                                                          "RSS MB"))
    for name, study in result["studies"].items():
        lines.append(f"{name}: {'x'.join(map(str, study['shape']))} int16 at "
                     f"{'x'.join(f'{s:g}' for s in study['spacing_mm'])} mm, {study['file_mb']:.0f} MB .nii.gz, "
                     f"{study['windows']} windows, float32 {study['float32_mb']:.0f} MB (seconds, median)")
        lines.append(header)
        engines = [k for k in ("limit_onnxruntime", "limit_openvino") if k in study]
        for key in ("operator_shm", "operator_grpc", *(engines or ["limit"]), "monai"):
            if key in study:
                lines.append(_row(key, study[key]["summary"]))
        if engines:
            diff = study.get("limit_openvino", {}).get("max_abs_diff_vs_onnxruntime")
            lines.append(f"  limit = the faster in-process engine: {study['limit'].get('engine')}"
                         + (f" (OpenVINO vs onnxruntime, max |output difference| {diff:.1e})" if diff is not None
                            else ""))
        if "limit" in study:
            reads = study["limit"]["read_variants_s"].items()
            encodes = study["limit"]["encode_variants_s"].items()
            lines.append("  limit's gzip: read " + "  ".join(f"{k} {v:.2f}s" for k, v in reads)
                         + " | encode " + "  ".join(f"{k} {v:.2f}s" for k, v in encodes))
        agree = study.get("label_agreement_with_operator")
        if agree:
            lines.append("  same labels as operator_shm: " + "  ".join(f"{k} {v * 100:.2f}%" for k, v in agree.items()))
        lines.append("")
    tr = result.get("transport")
    if tr:
        lines.append(f"window traffic ({tr['shm']['batch']} windows, {tr['shm']['mb_per_round_trip']:.0f} MB per round "
                     f"trip, no-compute model): shm {tr['shm']['round_trip_s'] * 1000:.0f} ms "
                     f"({tr['shm']['mb_per_s']:.0f} MB/s), gRPC {tr['grpc']['round_trip_s'] * 1000:.0f} ms "
                     f"({tr['grpc']['mb_per_s']:.0f} MB/s)")
        one, per = tr.get("one_window"), tr.get("per_window_s")
        if one and per and per.get("shm") is not None:
            lines.append(f"  1 window per request: shm {one['shm']['round_trip_s'] * 1000:.0f} ms, gRPC "
                         f"{one['grpc']['round_trip_s'] * 1000:.0f} ms; each further window adds shm "
                         f"{per['shm'] * 1000:.0f} ms, gRPC {per['grpc'] * 1000:.0f} ms")
    return "\n".join(lines)


def verdict_lines(result: dict) -> list[str]:
    lines = []
    for name, study in result["studies"].items():
        for key, value in study["ratios"].items():
            check = study["targets"].get(key)
            mark = "" if check is None else f"   target {check['target']}: {'MET' if check['met'] else 'MISSED'}"
            lines.append(f"{name:>6}  {key:<32}{value:7.2f}{mark}")
    tr = result.get("transport")
    if tr:
        check = tr["target"]
        lines.append(f"{'all':>6}  {'shm_speedup_over_grpc':<32}{tr['shm_speedup_over_grpc']:7.2f}   target "
                     f"{check['target']}: {'MET' if check['met'] else 'MISSED'}")
    return lines
