"""A warm-start probe operator: records how it was started, then does what WARM_PROBE asks.

WARM_PROBE=ok writes ``started.json`` into its output (pid, process group, session, cwd, argv, its own
variables, threads, open descriptors, logging handlers, which heavy libraries were already imported); crash exits 1;
killed sends itself SIGKILL.
"""

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

preloaded = sorted(m for m in ("numpy", "nibabel", "pydicom", "highdicom", "pynetdicom", "tritonclient.grpc")
                   if m in sys.modules)
handlers_at_start = len(logging.getLogger().handlers)
logging.basicConfig(level=logging.INFO, format="%(levelname)s probe: %(message)s")
action = os.environ.get("WARM_PROBE", "ok")
logging.info("started as %s", action)
if action == "crash":
    print("probe: crashing as asked", flush=True)
    sys.exit(1)
if action == "killed":
    os.kill(os.getpid(), signal.SIGKILL)
out = Path(os.environ["NVIDIA_CLARA_OUTPUTPATHS"].split(";")[0].split(":", 1)[-1] or ".")
record = {"pid": os.getpid(), "pgid": os.getpgid(0), "sid": os.getsid(0), "cwd": os.getcwd(), "argv": sys.argv,
          "variables": {k: v for k, v in os.environ.items() if k.startswith("WARM_")},
          "tasks": len(os.listdir("/proc/self/task")), "threads": threading.active_count(),
          "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
          "handlers_at_start": handlers_at_start, "preloaded": preloaded}
(out / "started.json").write_text(json.dumps(record))
print(f"probe: wrote {out / 'started.json'}", flush=True)
