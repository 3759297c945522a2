"""Keep freed memory in the C heap during CPU training (glibc ``mallopt``).

A CPU training step frees and re-allocates the same activation buffers every step. glibc maps
buffers above its mmap threshold afresh each time and unmaps them on free, and trims the heap
top back to the OS, so every step page-faults its activations in again: on the 2-core recipe
that is ~400k faults and 20 % system time per step. Raising the mmap and trim thresholds keeps
the memory for reuse: the recipe's step runs 1.4x faster for ~0.2 GiB more peak RSS
(``benchmarks/results/allocator.md``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # from <malloc.h>
_M_MMAP_THRESHOLD = -3
_LARGEST = 2**31 - 1  # mallopt takes an int


def keep_freed_memory() -> bool:
    """Tell glibc malloc never to unmap or trim freed memory (process-wide, from now on).

    Returns:
        ``True`` when set; ``False`` where there is no glibc ``mallopt`` (macOS, Windows, musl),
        which changes nothing else.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _LARGEST)) & bool(mallopt(_M_TRIM_THRESHOLD, _LARGEST))
