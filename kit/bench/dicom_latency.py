"""DICOM end-to-end latency: dcmtk storescu start -> the SEG in Orthanc, for the sample study, against the
segmentation operator's own time on the same study (goal: latency <= 1.5x the operator's time).

`make bench` measures it (`python -m kit.bench`, under ``"dicom_latency"`` in its JSON); alone:
    python -m kit.bench.dicom_latency [--repeats 3] [--idle-s 5,0] [--out .run/bench]
Starts its own embedded Triton, Orthanc (`make pacs`) and listener (`make listen`, RUNTIME=host,
def/liver-dicom-pipeline.yml) on free ports in a scratch run dir, and stops them all at the end. Each
LISTEN_IDLE_S value (default 5, the listener's default, and 0: the job starts when storescu's association
is released) gets its own listener and its own round trips, and its own verdict against the goal: at the
default the listener waits on purpose for more instances, and that wait is part of what a user gets.
The operator's own time is its stage in `make run-pipeline PIPELINE=def/one-operator-pipeline.yml` on the
sample NIfTI (same Triton), as the pipeline runner times it (process start included), run right before
each round trip so that both see the same load on the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from kit.bench import report
from kit.dicom.config import DEFAULT_IDLE_S, MIN_IDLE_S
from kit.dicom.orthanc import Rest
from kit.dicom.seg_check import seg_ids, study_uid_of, wait_new_seg
from kit.paths import ROOT
from kit.phantom.dicom import write_series
from kit.triton import embedded
from kit.triton.readiness import free_ports
from kit.triton.state import Ports
from kit.warm.client import SWITCH_VARIABLE, WarmServer, spawn
from odk import number_list

SAMPLE = ROOT / "local" / "input" / "synthetic_phantom_001.nii.gz"
STAGE_RE = re.compile(r"^(\S+)\s+ok\s+([0-9.]+)s", re.M)
GOAL = "latency/operator_alone"  # its bound is in kit.bench.report.TARGETS
TOOLS = ("Orthanc", "storescu")


def log(message: str) -> None:
    print(f"[odk] {message}", file=sys.stderr, flush=True)


def stage_times(text: str) -> dict[str, float]:
    """Operator -> seconds, from the summary table that kit.pipeline.run prints."""
    return {name: float(s) for name, s in STAGE_RE.findall(text)}


def script(name: str, action: str, env: dict[str, str]) -> None:
    proc = subprocess.run([str(ROOT / "scripts" / f"{name}.sh"), action], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/{name}.sh {action} failed: {proc.stderr.strip().splitlines()[-1:]}")


def idle_list(raw: str) -> list[float]:
    """``--idle-s``: LISTEN_IDLE_S values, comma-separated (odk.number_list), each >= 0 s."""
    values = number_list(raw)
    if not values or not all(math.isfinite(v) and v >= MIN_IDLE_S for v in values):
        raise argparse.ArgumentTypeError(f"{raw!r}: expected LISTEN_IDLE_S seconds >= {MIN_IDLE_S:g}, "
                                         "comma-separated, e.g. 5,0")
    return list(values)


def operator_alone(work: Path, env: dict[str, str]) -> float:
    """The segmentation operator's stage time on the sample NIfTI (one-operator pipeline, host)."""
    (work / "nifti").mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLE, work / "nifti" / SAMPLE.name)
    proc = subprocess.run([sys.executable, "-m", "kit.pipeline.run", str(ROOT / "def" / "one-operator-pipeline.yml"),
                           "--input-dir", str(work / "nifti"), "--output-dir", str(work / "nifti-out"),
                           "--runtime", "host", "--log-dir", str(work / "nifti-logs")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    times = stage_times(proc.stdout)
    if proc.returncode != 0 or len(times) != 1:
        raise RuntimeError(f"the operator alone failed: {proc.stderr.strip().splitlines()[-1:]}")
    return next(iter(times.values()))


def fresh_study(series: Path, target: Path) -> Path:
    """The series as a study never sent before (new Study, Series, SOP Instance and Frame of Reference UIDs, one
    per old one): the listener makes no new job of a study it already received unchanged, and the SEG writer
    puts a re-run of a series into the same SEG series, so each round trip sends a study of its own."""
    import pydicom
    from pydicom.uid import generate_uid

    new: dict[str, str] = {}
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in series.rglob("*") if p.is_file()):
        ds = pydicom.dcmread(path)
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
            if keyword in ds:
                setattr(ds, keyword, new.setdefault(str(ds.get(keyword)), generate_uid()))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(target / path.name, enforce_file_format=True)
    return target


def one_round_trip(series: Path, rest: Rest, listen_port: int, jobs_dir: Path) -> dict:
    series = fresh_study(series, series.parent / "rounds" / f"{time.time_ns()}")
    study = study_uid_of(series)
    known = seg_ids(rest, study)
    before = set(jobs_dir.glob("*")) if jobs_dir.is_dir() else set()
    start = time.perf_counter()
    sent = subprocess.run(["storescu", "+sd", "+r", "-aet", "BENCH", "-aec", "ODK", "127.0.0.1", str(listen_port),
                           str(series)], capture_output=True, text=True, timeout=300, check=False)
    send_s = time.perf_counter() - start
    if sent.returncode != 0:
        raise RuntimeError(f"storescu failed: {sent.stderr.strip()[-300:]}")
    wait_new_seg(rest, study, known, timeout=900, jobs_dir=jobs_dir)
    latency = time.perf_counter() - start
    (job,) = set(jobs_dir.glob("*")) - before
    deadline = time.monotonic() + 30
    while json.loads((job / "status.json").read_text())["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)  # the SEG is in; register-results is writing its report
    stages = stage_times((job / "job.log").read_text())
    return {"latency_s": round(latency, 2), "storescu_s": round(send_s, 2),
            "stages_s": stages, "job": job.name}


def bench_latency(models_dir: Path, work: Path, repeats: int = 3, idles: list[float] | None = None) -> dict:
    """Round trips per LISTEN_IDLE_S (default: the listener's default, then 0) with the model repository
    ``models_dir``; scratch in ``work``. {"skipped": why} when Orthanc or dcmtk is not installed."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return {"skipped": f"{', '.join(missing)} missing (scripts/setup-dicom.sh)"}
    idles = [DEFAULT_IDLE_S, 0.0] if idles is None else idles
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    series = work / "series"
    write_series(SAMPLE, series)
    http, grpc, metrics, pacs_dicom, pacs_http, listen = free_ports(6)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    env.update(ODK_RUN_DIR=str(work / "run"), PACS_DICOM_PORT=str(pacs_dicom), PACS_HTTP_PORT=str(pacs_http),
               LISTEN_PORT=str(listen), RUNTIME="host",
               PIPELINE=str(ROOT / "def" / "liver-dicom-pipeline.yml"),
               NVIDIA_TRITON_GRPCURI=f"127.0.0.1:{grpc}", NVIDIA_TRITON_HTTPURI=f"127.0.0.1:{http}")
    triton_dir = work / "triton"
    try:
        embedded.start(models_dir, Ports(http, grpc, metrics), triton_dir, timeout=180)
        settings, compare = measure(idles, repeats, series, work, env, Rest(f"http://127.0.0.1:{pacs_http}"),
                                    listen)
    finally:
        embedded.stop(triton_dir)
    return {"study": SAMPLE.name, "instances": len(list(series.glob("*.dcm"))), "repeats": repeats,
            "default_idle_s": DEFAULT_IDLE_S, "goal_ratio": report.TARGETS[GOAL], "settings": settings,
            "warm_vs_cold": compare}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kit.bench.dicom_latency", description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--idle-s", type=idle_list, default=[DEFAULT_IDLE_S, 0.0],
                    help=f"LISTEN_IDLE_S values, comma-separated (default: {DEFAULT_IDLE_S:g},0)")
    ap.add_argument("--models-dir", type=Path, default=ROOT / "local" / "models")
    ap.add_argument("--out", type=Path, default=ROOT / ".run" / "bench")
    args = ap.parse_args(argv)
    result = bench_latency(args.models_dir, args.out / "dicom-latency", args.repeats, args.idle_s)
    if "skipped" in result:
        log(f"DICOM latency skipped: {result['skipped']}")
        return 0
    (args.out / "dicom-latency.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_table(result)
    for line in verdict_lines(result):
        print(f"  {line}")
    print(f"  JSON: {args.out / 'dicom-latency.json'}")
    return 0


def _round_trips(idle: float, repeats: int, series: Path, work: Path, env: dict[str, str], rest: Rest,
                 listen_port: int, start: str) -> list[dict]:
    """``repeats`` pairs (operator alone, round trip) on a listener at ``idle``, operators started ``start``."""
    env = {**env, "LISTEN_IDLE_S": f"{idle:g}", SWITCH_VARIABLE: "1" if start == "warm" else "0"}
    script("listen", "start", env)
    try:
        runs = []
        for i in range(repeats):
            alone = operator_alone(work, env)
            run = one_round_trip(series, rest, listen_port, work / "run" / "listen" / "jobs")
            runs.append({**run, "operator_alone_s": alone})
            log(f"LISTEN_IDLE_S={idle:g} ({start} start) pair {i + 1}: operator alone {alone:.1f} s, storescu -> "
                f"SEG in Orthanc {run['latency_s']:.1f} s (stages {run['stages_s']})")
    finally:
        script("listen", "stop", env)
    return runs


def measure(idles: list[float], repeats: int, series: Path, work: Path, env: dict[str, str], rest: Rest,
            listen_port: int) -> tuple[list[dict], dict]:
    """Per LISTEN_IDLE_S: `repeats` pairs of (operator alone, round trip), run back to back so that both
    see the same load on the machine, after one operator run that warms Triton up; operators start warm.
    Then the same at the last LISTEN_IDLE_S with every operator started cold, for the stages before/after."""
    settings = []
    operator_alone(work, env)  # not counted: Triton's first inference of the model is slower
    script("pacs", "start", env)
    try:
        for idle in idles:
            settings.append(summarise(idle, _round_trips(idle, repeats, series, work, env, rest, listen_port, "warm")))
        cold = summarise(idles[-1], _round_trips(idles[-1], repeats, series, work, env, rest, listen_port, "cold"))
    finally:
        script("pacs", "stop", env)
    compare = {"idle_s": idles[-1], "cold": {k: cold[k] for k in ("latency_s", "operator_alone_s", "ratio",
                                                                   "outside_operators_s", "stages_s")},
               "warm": {k: settings[-1][k] for k in ("latency_s", "operator_alone_s", "ratio",
                                                      "outside_operators_s", "stages_s")},
               "imports_s": import_times(work, env), "cold_runs": cold["runs"]}
    return settings, compare


# The module each stage of def/liver-dicom-pipeline.yml imports first (its `python -u -m` module).
# What each stage imports on its way (the operator library imports its parts when they are first used, and
# the SEG writer and register-results their DICOM toolkits inside the functions that need them).
STAGE_MODULES = {"dicom-reader": "app.dicom.reader, odk.operator, odk.dicom.to_nifti",
                 "segmentation": "app.main, odk.operator, odk.nifti, odk.triton, odk.transforms, odk.overlay",
                 "dicom-seg-writer": "app.dicom.segwriter, odk.operator, odk.dicom.to_seg, highdicom",
                 "register-results": "app.dicom.register, odk.operator, odk.dicom.store, pynetdicom"}
IMPORT_PROBE = "import time\nt = time.perf_counter()\nimport {module}\nprint(time.perf_counter() - t)\n"


def import_times(work: Path, env: dict[str, str], repeats: int = 3) -> dict[str, dict[str, float]]:
    """Seconds each stage's module takes to import: in a fresh interpreter (cold) and in a child of the fork
    server (warm: what its preloaded libraries leave); medians of ``repeats``."""
    probes = work / "import-probes"
    probes.mkdir(parents=True, exist_ok=True)
    times: dict[str, dict[str, list[float]]] = {stage: {"cold": [], "warm": []} for stage in STAGE_MODULES}
    with WarmServer.start() as server:
        for _ in range(repeats):
            for stage, module in STAGE_MODULES.items():
                probe = probes / f"{stage}.py"
                probe.write_text(IMPORT_PROBE.format(module=module))
                cold = subprocess.run([sys.executable, "-u", str(probe)], cwd=ROOT, env=env, capture_output=True,
                                      text=True, timeout=120, check=True)
                times[stage]["cold"].append(float(cold.stdout.split()[-1]))
                proc = spawn(server.socket, [sys.executable, "-u", str(probe)], env, ROOT)
                if isinstance(proc, str):
                    raise RuntimeError(f"the fork server refused the import probe: {proc}")
                out = proc.stdout.read()
                if proc.wait(timeout=120) != 0:
                    raise RuntimeError(f"the warm import probe of {module} failed: {out[-300:]}")
                times[stage]["warm"].append(float(out.split()[-1]))
    return {stage: {k: round(statistics.median(v), 3) for k, v in t.items()} for stage, t in times.items()}


def summarise(idle: float, runs: list[dict]) -> dict:
    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in runs), 2)

    stages = {k: round(statistics.median(r["stages_s"].get(k, 0.0) for r in runs), 1) for k in runs[0]["stages_s"]}
    ratio = round(statistics.median(r["latency_s"] / r["operator_alone_s"] for r in runs), 2)
    return {
        "idle_s": idle, "latency_s": median("latency_s"), "operator_alone_s": median("operator_alone_s"),
        "ratio": ratio, "target": report.check_targets({GOAL: ratio})[GOAL],
        "ratio_in_job": round(statistics.median(r["latency_s"] / r["stages_s"]["segmentation"] for r in runs), 2),
        # neither the idle wait nor an operator: sending, job start-up, the pipeline runner, polling
        "outside_operators_s": round(statistics.median(r["latency_s"] - idle - sum(r["stages_s"].values())
                                                       for r in runs), 2),
        "stages_s": stages, "runs": runs}


def print_table(result: dict) -> None:
    print(f"\nDICOM latency, {result['study']} ({result['instances']} slices), medians of {result['repeats']} "
          f"pairs; goal: latency <= {result['goal_ratio']:g}x the operator alone")
    print(f"  {'LISTEN_IDLE_S':>13}  {'storescu -> SEG':>15}  {'alone':>6}  {'ratio':>6}  {'vs in-job':>9}  "
          f"{'other':>6}  stages in the job (s)")
    for st in result["settings"]:
        print(f"  {st['idle_s']:>13g}  {st['latency_s']:>13.1f} s  {st['operator_alone_s']:>5.1f}s  "
              f"{st['ratio']:>5.2f}x  {st['ratio_in_job']:>8.2f}x  {st['outside_operators_s']:>5.1f}s  "
              f"{st['stages_s']}")
    print("  alone: the segmentation operator by itself on the same study; ratio: median of latency / alone per pair;")
    print("  vs in-job: latency / the job's own segmentation stage; other: latency - idle wait - operator stages")
    cmp = result.get("warm_vs_cold")
    if cmp:
        print(f"  at LISTEN_IDLE_S={cmp['idle_s']:g}, stages cold -> warm start (s): "
              + ", ".join(f"{k} {cmp['cold']['stages_s'].get(k, 0):.1f} -> {v:.1f}"
                          for k, v in cmp["warm"]["stages_s"].items())
              + f"; latency {cmp['cold']['latency_s']:.1f} -> {cmp['warm']['latency_s']:.1f}")
        print("  imports cold -> warm (s): " + ", ".join(f"{k} {v['cold']:.2f} -> {v['warm']:.2f}"
                                                      for k, v in cmp["imports_s"].items()))


def verdict_lines(result: dict | None) -> list[str]:
    """One verdict per LISTEN_IDLE_S, computed from its ratio; the default setting is named as such."""
    if not result:
        return []
    if "settings" not in result:
        return [f"DICOM latency not measured: {result.get('skipped') or result.get('error')}"]
    lines = []
    for st in result["settings"]:
        default = " (the default)" if st["idle_s"] == result["default_idle_s"] else ""
        check = st["target"]
        lines.append(f"DICOM latency at LISTEN_IDLE_S={st['idle_s']:g}{default}: {st['latency_s']:.1f} s vs the "
                     f"operator alone {st['operator_alone_s']:.1f} s = {st['ratio']:.2f}x   target {check['target']}: "
                     f"{'MET' if check['met'] else 'MISSED'}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
