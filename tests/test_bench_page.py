"""docs/benchmark.md is generated from a real bench result: a tiny `python -m kit.bench` run writes its JSON,
`python -m kit.bench.page` (`make bench-report`) renders the machine, versions, commit and tables into the
page below its marker and keeps the hand-written part above it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_model import NAME, write_tiny_repository

from kit.bench import report
from kit.bench.page import MARKER, update

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "benchmark.md"


def test_committed_page_has_the_marker_and_its_prose() -> None:
    text = PAGE.read_text()
    assert text.count(MARKER) == 1
    assert "## Results" in text.split(MARKER, 1)[1]
    assert "make bench-report" in text.split(MARKER, 1)[0]


def test_missing_result_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "kit.bench.page", "--json", str(tmp_path / "none.json"),
                           "--page", str(tmp_path / "page.md")], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"[odk] error: no bench result at {tmp_path / 'none.json'}; "
                                                "run 'make bench' first"]
    assert not (tmp_path / "page.md").exists()


@pytest.mark.slow
def test_page_is_generated_from_a_real_bench_run(tmp_path: Path) -> None:
    models = write_tiny_repository(tmp_path / "models")
    out = tmp_path / "out"
    bench = subprocess.run([sys.executable, "-m", "kit.bench", "--sizes", "tiny", "--repeats", "1",
                            "--monai-repeats", "0", "--transport-repeats", "2", "--no-profile",
                            "--model-dir", str(models / NAME), "--cache", str(tmp_path / "cache"), "--out", str(out)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert bench.returncode == 0, bench.stdout[-2000:] + bench.stderr[-3000:]
    latest = out / "latest.json"
    result = json.loads(latest.read_text())
    assert result["commit"] == report.commit() != "unknown"
    page = tmp_path / "benchmark.md"
    shutil.copy2(PAGE, page)
    gen = subprocess.run([sys.executable, "-m", "kit.bench.page", "--json", str(latest), "--page", str(page)],
                         capture_output=True, text=True, check=False)
    assert gen.returncode == 0, gen.stderr
    text = page.read_text()
    head, generated = text.split(MARKER, 1)
    assert head == PAGE.read_text().split(MARKER, 1)[0]
    m = result["machine"]
    assert f"of commit `{result['commit']}`" in generated and m["cpu"] in generated
    assert f"onnxruntime {m['versions']['onnxruntime']}" in generated and f"Python {m['python']}" in generated
    shm = result["studies"]["tiny"]["operator_shm"]["summary"]
    assert f"| operator, shm | {shm['timings_s']['read']:.2f} |" in generated
    for row in ("| operator, gRPC |", "| limit (onnxruntime in-process) |", "| operator_shm/limit |"):
        assert row in generated
    assert "MONAI |" not in generated  # not run: not shown
    assert update(text, result) == text  # regenerating from the same run changes nothing
