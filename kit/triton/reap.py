"""What an operator of this repo can leave behind when it is killed, and its removal.

The operator names its system shared-memory regions ``odk_<pid>_<hex>_in|out`` (created in /dev/shm and
registered with Triton) and writes its outputs atomically through hidden ``.<name>.<random>.tmp`` files.
A killed operator (SIGKILL, or a signal it does not handle) leaves both; the kit's scripts call
``python -m kit.triton reap --pid PID ...`` once the operator has ended.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from kit.procs import pid_alive

SHM_DIR = Path("/dev/shm")


@dataclasses.dataclass
class Reaped:
    files: int = 0  # /dev/shm regions unlinked
    registrations: int = 0  # regions unregistered from Triton
    temporaries: int = 0  # temporary files removed from the output folder

    def __bool__(self) -> bool:
        return bool(self.files or self.registrations or self.temporaries)


def region_prefix(pid: int) -> str:
    return f"odk_{pid}_"




def unregister(grpc_url: str, prefix: str, timeout_s: float = 5.0, wait_s: float = 60.0) -> int:
    """Unregister from Triton every system shared-memory region whose name starts with ``prefix``. Triton
    refuses while a request of the killed operator still uses a region, so each is retried until ``wait_s``."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    count = 0
    deadline = time.monotonic() + wait_s
    try:
        with grpcclient.InferenceServerClient(grpc_url) as client:
            status = client.get_system_shared_memory_status(client_timeout=timeout_s)
            for name in [n for n in status.regions if n.startswith(prefix)]:
                while True:
                    try:
                        client.unregister_system_shared_memory(name, client_timeout=timeout_s)
                        count += 1
                        break
                    except InferenceServerException:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)
    except InferenceServerException:
        return count  # no Triton there any more, or it would not let go in time
    return count


def reap(pid: int, output_dir: Path | None, since: float, grpc_url: str = "") -> Reaped:
    """Remove the leftovers of operator ``pid`` (which must have ended): its shm regions (files, and their
    registration with the Triton at ``grpc_url``) and the temporary files written into ``output_dir``
    since epoch time ``since``. ``pid`` 0: only the temporary files (a container's pids are its own)."""
    done = Reaped()
    if pid > 0 and not pid_alive(pid):
        for region in SHM_DIR.glob(f"{region_prefix(pid)}*"):
            region.unlink(missing_ok=True)
            done.files += 1
        if grpc_url:
            done.registrations = unregister(grpc_url, region_prefix(pid))
    if output_dir is not None and output_dir.is_dir():
        for path in output_dir.rglob(".*.tmp"):
            try:
                if path.is_file() and not path.is_symlink() and path.stat().st_mtime >= since - 1:
                    path.unlink()
                    done.temporaries += 1
            except OSError:
                continue
    return done
