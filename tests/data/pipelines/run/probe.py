"""A small operator for runner tests: under the real clara driver, it records what it was given.

Writes ``seen.json`` (its input and output entries, job and stage names, PROBE_* variables and the
files it found in each input) into every output, then copies the inputs' files into its first output
so that a chain of probes carries the payload along. PROBE_FAIL=1 makes it fail.
"""

import json
import os
import shutil
import sys

import clara


def execute(driver, payload):
    if os.environ.get("PROBE_FAIL") == "1":
        print("probe: failing as asked (PROBE_FAIL=1)", flush=True)
        return False
    seen = {
        "job": driver.job_name,
        "stage": driver.stage_name,
        "inputs": {e.name: str(e.path) for e in payload.input_entries},
        "outputs": {e.name: str(e.path) for e in payload.output_entries},
        "files": {e.name: sorted(p.name for p in e.path.rglob("*") if p.is_file())
                  for e in payload.input_entries},
        "variables": {k: v for k, v in os.environ.items() if k.startswith("PROBE_")},
        "triton": os.environ.get("NVIDIA_TRITON_GRPCURI", ""),
    }
    for entry in payload.output_entries:
        (entry.path / "seen.json").write_text(json.dumps(seen, indent=1))
    first = payload.output_entries[0].path
    for entry in payload.input_entries:
        for src in entry.path.rglob("*"):
            if src.is_file() and src.name != "seen.json":
                shutil.copyfile(src, first / src.name)
    print(f"probe {driver.stage_name}: {seen['inputs']} -> {seen['outputs']}", flush=True)
    return True


sys.exit(clara.run(execute_handler=execute))
