"""``make listen-status`` and the start-up check of ``make listen``: the listener's state and its jobs."""

from __future__ import annotations

import os
import ssl
import time
from pathlib import Path

from pynetdicom import AE
from pynetdicom.sop_class import Verification

from kit.dicom import procgroup
from kit.dicom.jobs import read_jobs
from kit.dicom.runstate import read_state
from kit.dicom.tls import listener_tls
from kit.procs import pid_alive


def probe_tls(host: str) -> tuple[ssl.SSLContext, str] | None:
    """How the kit's own checks reach a listener with DICOM TLS (LISTEN_TLS_* in the environment): they only ask
    whether it answers, so its certificate is not verified; when it requires client certificates, the
    listener's own certificate is presented (the certificates of kit.dicom.tls are for both uses)."""
    tls = listener_tls(os.environ)
    if tls is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls.ca is not None:
        ctx.load_cert_chain(tls.cert, tls.key)
    return ctx, host


def echo(host: str, port: int, called: str, calling: str = "ODK-CHECK", timeout: float = 5.0) -> bool:
    """True when host:port accepts an association as `called` and answers C-ECHO with success."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = timeout
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, port, ae_title=called, tls_args=probe_tls(host))
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_echo()
        return bool(status) and status.Status == 0x0000
    finally:
        assoc.release()


def probe_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def wait_echo(run_dir: Path, pid: int, timeout: float) -> str | None:
    """None once the listener (state written) answers C-ECHO; else why not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid and not pid_alive(pid):
            return "the listener exited during start-up"
        state = read_state(run_dir)
        if state:
            allowed = [a for a in state.get("allowed_aets", "").split(",") if a]
            calling = allowed[0] if allowed else "ODK-CHECK"
            if echo(probe_host(state["host"]), int(state["port"]), state["aet"], calling, timeout=2.0):
                return None
        time.sleep(0.1)
    return f"the listener did not answer C-ECHO within {timeout:g} s"


def show(run_dir: Path) -> int:
    state = read_state(run_dir)
    running = bool(state) and pid_alive(int(state.get("pid", "0") or 0))
    if running:
        print(f"listen: pid {state['pid']}, AE {state['aet']} on {state['host']}:{state['port']}, "
              f"idle {state['idle_s']} s, pipeline {state['pipeline']}, results to "
              f"{state.get('destination') or 'nowhere (no DICOM_DESTINATION, no make pacs)'}")
        if state.get("allowed_aets"):
            print(f"listen: calling AE titles allowed: {state['allowed_aets']}")
    else:
        print(f"listen: not running (start it with 'make listen'); jobs in {run_dir / 'jobs'}")
    jobs = read_jobs(run_dir / "jobs")
    if jobs:
        width = max(len(j.get("job", "")) for j in jobs)
        states = max(9, *(len(j.get("state", "")) for j in jobs))
        print(f"{'job':<{width}}  {'state':<{states}}  {'inst':>4}  calling AE        reason")
        for j in jobs:
            run = procgroup.recorded(run_dir / "jobs" / j.get("job", "")) if j.get("state") == "running" else None
            reason = f"process group {run.pgid}" if run else j.get("reason", "")
            print(f"{j.get('job', ''):<{width}}  {j.get('state', ''):<{states}}  {j.get('instances', 0):>4}  "
                  f"{j.get('calling_aet', ''):<16}  {reason}")
    else:
        print("listen: no jobs yet")
    return 0 if running else 3
