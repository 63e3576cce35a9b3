"""Profile the operator's execute step with pyinstrument.

The driver runs the handler in a worker thread, which pyinstrument (it samples the thread it starts on)
does not see; so this runs the operator's own ``prepare`` and ``process`` (app/main.py) through
``odk.run_studies`` on the main thread, with the operator's configuration from the environment, imports
included. Writes the call tree and a flat self-time list.

    python -m kit.bench.profile_operator --input DIR --output DIR --report PROFILE.txt
"""

from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path

from pyinstrument import Profiler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kit.bench.profile_operator", description=__doc__)
    p.add_argument("--input", type=Path, required=True)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--report", type=Path, required=True)
    p.add_argument("--operator", default="app.main", help="the operator's module (its prepare and process)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    profiler = Profiler(interval=0.002)
    profiler.start()
    import odk

    # The operator is named, not imported here: the kit treats an operator as the user's plug-in.
    module = importlib.import_module(a.operator)
    cfg = odk.from_env()
    with odk.TritonSession.open(cfg) as session:
        model = module.prepare(session)
        summary = odk.run_studies([a.input], a.output, lambda: lambda study: module.process(study, session, model))
    profiler.stop()
    tree = profiler.output_text(unicode=True, color=False, show_all=False)
    flat = profiler.output_text(unicode=True, color=False, flat=True, flat_time="self")
    flat_top = "\n".join(flat.splitlines()[:40])
    a.report.write_text(f"{tree}\n--- self time, top functions ---\n{flat_top}\n")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
