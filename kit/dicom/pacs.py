"""``make pacs`` helpers: write Orthanc's config, wait for its REST API, show its state.

    python -m kit.dicom.pacs config|wait|status|destination --run-dir .run/pacs [...]
The process itself is started and stopped by scripts/pacs.sh (pid in <run-dir>/pacs.pid).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from kit.dicom.config import Destination
from kit.dicom.orthanc import DEFAULT_ALLOWED_AETS, PacsConfig, Rest, parse_callers, write_config
from kit.dicom.runstate import read_state
from kit.dicom.tls import orthanc_options
from kit.procs import pid_alive
from kit.triton.readiness import port_in_use


def running_destination(run_dir: Path) -> Destination | None:
    """The PACS that `make pacs` runs (its state and a live pid), as a destination for results."""
    state = read_state(run_dir)
    try:
        if state and pid_alive(int(state.get("pid", "0"))):
            return Destination(state["aet"], "127.0.0.1", int(state["dicom_port"]), tls=state.get("tls") == "1")
    except (KeyError, ValueError):
        return None
    return None


def wait(rest: Rest, pid: int, timeout: float) -> str | None:
    """None once REST /system answers; else why not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rest.answers():
            return None
        if not pid_alive(pid):
            return "Orthanc exited during start-up"
        time.sleep(0.1)
    return f"Orthanc's REST API did not answer within {timeout:g} s"


def status(run_dir: Path) -> int:
    """`make pacs-status`: one line; exit 0 running, 1 running but its REST API does not answer, 3 not running."""
    state = read_state(run_dir)
    if not state or not pid_alive(int(state.get("pid", "0") or 0)):
        print(f"pacs: not running (nothing recorded in {run_dir}, or its process is gone); start it with 'make pacs'")
        return 3
    rest = Rest(f"http://127.0.0.1:{state['http_port']}")
    where = (f"pacs: Orthanc pid {state['pid']}, AE {state['aet']}, DICOM 127.0.0.1:{state['dicom_port']}, "
             f"REST/UI {rest.url}/app/explorer.html, storage {run_dir / 'db'}")
    try:
        stats = rest.get("/statistics")
    except OSError as exc:
        print(f"{where}; its REST API does not answer ({exc})")
        return 1
    assert isinstance(stats, dict)
    print(f"{where}; {stats['CountStudies']} studies, {stats['CountSeries']} series, "
          f"{stats['CountInstances']} instances ({stats['TotalDiskSizeMB']} MB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kit.dicom.pacs", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("config", "wait", "status", "destination"))
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--dicom-port", type=int, default=4242)
    ap.add_argument("--http-port", type=int, default=8042)
    ap.add_argument("--aet", default="ORTHANC")
    ap.add_argument("--listen-aet", default="ODK")
    ap.add_argument("--listen-port", type=int, default=11112)
    ap.add_argument("--allowed-aets", default=DEFAULT_ALLOWED_AETS, help="PACS_ALLOWED_AETS")
    ap.add_argument("--results-aet", default="ODK", help="DICOM_CALLING_AET of register-results")
    ap.add_argument("--tls-dir", type=Path, default=None, help="PACS_TLS=1: DICOM TLS with these certificates")
    ap.add_argument("--pid", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args(argv)
    if args.command == "config":
        try:
            allowed = parse_callers(args.allowed_aets)
        except ValueError as exc:
            print(f"[odk] error: {exc}", file=sys.stderr)
            return 1
    else:
        allowed = ()
    cfg = PacsConfig(args.run_dir, args.dicom_port, args.http_port, args.aet, args.listen_aet, args.listen_port,
                     allowed=allowed, results_aet=args.results_aet or "ODK",
                     tls=orthanc_options(args.tls_dir.resolve()) if args.tls_dir else None)
    if args.command == "config":
        taken = [f"{name} {port}" for name, port in (("PACS_DICOM_PORT", cfg.dicom_port),
                                                      ("PACS_HTTP_PORT", cfg.http_port)) if port_in_use(port)]
        if taken:
            print(f"[odk] error: port {', '.join(taken)} is already in use; stop what uses it or choose "
                  "another (e.g. make pacs PACS_DICOM_PORT=4243 PACS_HTTP_PORT=8043)", file=sys.stderr)
            return 1
        print(write_config(cfg))
        return 0
    if args.command == "wait":
        why = wait(Rest(cfg.url), args.pid, args.timeout)
        if why:
            print(f"[odk] error: {why}; its log: {args.run_dir / 'orthanc.log'}", file=sys.stderr)
            return 1
        return 0
    if args.command == "destination":
        dest = running_destination(args.run_dir)
        if dest is None:
            return 3
        print(dest)
        return 0
    return status(args.run_dir)


if __name__ == "__main__":
    sys.exit(main())
