"""Keeping freed CPU memory for reuse (issue "Speed where users spend it").

glibc's malloc hands every block above its mmap threshold (at most 32 MiB) straight back to the
kernel when it is freed. The dynamics allocate feature maps of that size several times per
timestep (Lite0 at batch 8 and 224 px: 51 MB for decoder 1's upsampled input), so each one is a
fresh mmap whose pages the kernel must zero on first touch: on a 2-core CPU that system time was
as large as the computation itself. With mmap off and trimming off, freed blocks stay in the heap
and are reused; the process keeps its peak resident size instead of giving it back between
batches. Same numbers, about 1.7x the speed (docs/performance.md).

Applied once per process by ``Session.start``; ``PCNETS_ALLOCATOR=system`` leaves malloc as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_TRIM_AT = 2**31 - 1  # the largest value mallopt takes: trim only above 2 GiB of free top


def allocator_label() -> str:
    """What provenance.json records: "keep-freed" when the switch is on, else "system"."""
    return "keep-freed" if keep_freed_memory() else "system"


@functools.cache
def keep_freed_memory() -> bool:
    """Turn glibc's mmap and trimming off for this process (and the workers it forks), once. True
    when applied; False where it does not apply (not glibc, or PCNETS_ALLOCATOR=system)."""
    if os.environ.get("PCNETS_ALLOCATOR", "").lower() == "system" or not sys.platform.startswith(
        "linux"
    ):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, _TRIM_AT))
