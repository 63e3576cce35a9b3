"""Running the real operator (``python -u -m app``) against a real Triton from tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def operator_env(in_dir: Path, out_dir: Path, grpc_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NVIDIA_", "TRITON_", "ODK_"))}
    env.update({
        "NVIDIA_CLARA_INPUTPATHS": f"payload:{in_dir}",
        "NVIDIA_CLARA_OUTPUTPATHS": f"segmentation/out:{out_dir}",
        "NVIDIA_CLARA_NOSYNCLOCK": "TRUE",
        "NVIDIA_TRITON_GRPCURI": grpc_url,
    })
    env.update(extra)
    return env


def run_operator(in_dir: Path, out_dir: Path, grpc_url: str, timeout: float = 600, module: str = "app",
                 **extra: str) -> subprocess.CompletedProcess[str]:
    """Run an operator (``module``: the segmentation operator's ``app`` by default) as the image does; returns
    the finished process (stdout+stderr in .stdout)."""
    return subprocess.run([sys.executable, "-u", "-m", module], cwd=ROOT,
                          env=operator_env(in_dir, out_dir, grpc_url, **extra),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)


def load(path: Path) -> nib.Nifti1Image:
    return nib.load(str(path))


def orphaned_shm_regions() -> set[str]:
    """The operator's shared-memory regions (``odk_<pid>_...``) whose process no longer runs."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        return set()
    orphans = set()
    for p in shm.iterdir():
        parts = p.name.split("_")
        if len(parts) >= 3 and parts[0] == "odk" and parts[1].isdigit() and not Path(f"/proc/{parts[1]}").exists():
            orphans.add(p.name)
    return orphans


class RunningOperator:
    """The operator started in the background, its output read line by line (for fault injection)."""

    def __init__(self, in_dir: Path, out_dir: Path, grpc_url: str, **extra: str) -> None:
        import queue
        import threading

        self.proc = subprocess.Popen([sys.executable, "-u", "-m", "app"], cwd=ROOT,
                                     env=operator_env(in_dir, out_dir, grpc_url, **extra), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, needle: str, timeout: float = 120) -> str:
        """Block until a line containing ``needle`` appears; AssertionError (with the log) otherwise."""
        import queue
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if needle in line:
                return line
        raise AssertionError(f"no line with {needle!r}:\n" + self.log)

    def finish(self, timeout: float = 120) -> int:
        """Wait for the exit (killing it after ``timeout``) and collect the rest of the log."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"operator still running after {timeout} s:\n{self.log}") from None
        while (line := self._queue.get(timeout=10)) is not None:
            self.lines.append(line)
        return code

    @property
    def log(self) -> str:
        return "\n".join(self.lines)


def error_lines(log: str) -> list[str]:
    return [ln for ln in log.splitlines() if " ERROR " in ln]


def leftovers(out_dir: Path) -> list[Path]:
    """Temporary or hidden files in an output folder (there must be none after a run)."""
    return [p for p in out_dir.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"] if out_dir.exists() else []


def own_shm_files(pid: int) -> list[str]:
    """The /dev/shm regions of operator process ``pid``."""
    return sorted(p.name for p in Path("/dev/shm").glob(f"odk_{pid}_*"))


def ct_volume(shape=(160, 160, 60), seed: int = 0) -> np.ndarray:
    """A body-like int16 CT in HU: an elliptic 'abdomen' of soft tissue with a brighter 'organ' in air."""
    x, y, z = np.mgrid[: shape[0], : shape[1], : shape[2]]
    body = ((x - shape[0] / 2) / (shape[0] * 0.42)) ** 2 + ((y - shape[1] / 2) / (shape[1] * 0.35)) ** 2 < 1
    organ = ((x - shape[0] * 0.4) / (shape[0] * 0.18)) ** 2 + ((y - shape[1] * 0.45) / (shape[1] * 0.15)) ** 2 \
        + ((z - shape[2] / 2) / (shape[2] * 0.35)) ** 2 < 1
    rng = np.random.default_rng(seed)
    vol = np.where(body, 40, -1000) + np.where(organ, 60, 0) + rng.normal(0, 10, shape)
    return vol.astype(np.int16)


def write_ct(path: Path, data: np.ndarray, spacing=(1.5, 1.5, 3.0)) -> Path:
    nib.save(nib.Nifti1Image(data, np.diag([*spacing, 1.0])), str(path))
    return path


def studies(folder: Path, n: int, shape=(160, 160, 60)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_ct(folder / f"study{i}.nii.gz", ct_volume(shape, seed=i)) for i in range(n)]


# Runs its arguments as a child and writes that child's peak RSS (KiB) to the file named first. The
# launcher is small: a peak RSS measured from the test process directly would start at the test
# process's own size (Linux keeps the high-water mark across fork and exec).
_LAUNCHER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]);"
             " open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss));"
             " sys.exit(code)")


def run_operator_measured(in_dir: Path, out_dir: Path, grpc_url: str, timeout: float = 600,
                          **extra: str) -> tuple[int, str, int]:
    """Run the operator; (exit code, log, peak RSS in bytes of the operator process alone)."""
    import tempfile

    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        proc = subprocess.run([sys.executable, "-c", _LAUNCHER, rss.name, sys.executable, "-u", "-m", "app"],
                              cwd=ROOT, env=operator_env(in_dir, out_dir, grpc_url, **extra), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
        peak_kib = int(rss.read() or 0)
    assert peak_kib > 0, proc.stdout
    return proc.returncode, proc.stdout, peak_kib * 1024
