"""The one place the operator reaches into tritonclient's private API (pinned tritonclient==2.73.0).

tritonclient.utils.shared_memory offers no way to unlink a region's name while a numpy view of it is still
alive (destroy_shared_memory_region raises BufferError); its SharedMemoryRegion keeps the
multiprocessing.shared_memory.SharedMemory in the private attribute ``_mpsm_handle``.
tests/test_private_apis.py fails loudly when a tritonclient version changes that.
"""

from __future__ import annotations

PRIVATE_HANDLE = "_mpsm_handle"


class PrivateApiChanged(RuntimeError):
    """A pinned library no longer has the private attribute this module relies on."""


def unlink_region_name(region: object) -> None:
    """Remove a system shared-memory region's name from /dev/shm; the mapping lives on until its last view goes."""
    handle = getattr(region, PRIVATE_HANDLE, None)
    if handle is None or not callable(getattr(handle, "unlink", None)):
        raise PrivateApiChanged(f"tritonclient's SharedMemoryRegion has no {PRIVATE_HANDLE}.unlink() any more;"
                                " update app/shm_region.py for this tritonclient version")
    handle.unlink()
