"""The operator's two system shared-memory regions (input and output windows) and their lifetime.

Regions are named ``odk_<pid>_<random>_{in,out}``. They are created once per run, registered with
Triton (again after a Triton restart), and always unregistered and unlinked at the end, also after a
signal: nothing is left in /dev/shm.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable

import numpy as np
import tritonclient.utils.shared_memory as shm

from .shm_region import unlink_region_name

log = logging.getLogger("app")
Register = Callable[[str, str, int], None]
Unregister = Callable[[str], None]


class Regions:
    def __init__(self) -> None:
        self.regions: list[tuple[str, int, shm.SharedMemoryRegion]] = []  # (name, size, handle)

    def create(self, sizes: dict[str, int]) -> None:
        tag = f"odk_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        for kind, size in sizes.items():
            name = f"{tag}_{kind}"
            self.regions.append((name, size, shm.create_shared_memory_region(name, "/" + name, size,
                                                                            create_only=True)))

    def register(self, register: Register) -> None:
        for name, size, _handle in self.regions:
            register(name, "/" + name, size)

    def handle(self, index: int) -> tuple[str, shm.SharedMemoryRegion]:
        name, _size, handle = self.regions[index]
        return name, handle

    def write(self, index: int, array: np.ndarray) -> None:
        shm.set_shared_memory_region(self.regions[index][2], [array])

    def read(self, index: int, shape: list[int]) -> np.ndarray:
        return shm.get_contents_as_numpy(self.regions[index][2], np.float32, shape)

    def release(self, unregister: Unregister | None) -> None:
        """Unregister (when the server can still be asked) and unlink every region; never raises."""
        while self.regions:
            name, _size, handle = self.regions.pop()
            if unregister is not None:
                try:
                    unregister(name)
                except Exception as exc:  # the server may be gone; the region is still ours to unlink
                    log.debug("unregister %s: %s", name, exc)
            try:
                shm.destroy_shared_memory_region(handle)
            except BufferError:
                # A view into the region is still referenced (e.g. by a traceback): unlink the name anyway
                # so nothing is left in /dev/shm; the mapping goes away with the last reference.
                try:
                    unlink_region_name(handle)
                except Exception as exc:  # PrivateApiChanged included: the run's own error must not be hidden
                    log.error("could not unlink shared-memory region %s: %s", name, exc)
            except Exception as exc:
                log.debug("unlink %s: %s", name, exc)
