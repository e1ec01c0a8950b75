"""A sensor's memory held at its high-water mark instead of going back and forth to the kernel.

A pass of the engine builds its tables anew (the alive flows merged with the new rows, then the
ones still alive taken out): for a moment it holds about three times the alive table.  With glibc's
defaults those blocks are mapped for the pass and unmapped after it (arrays over the mmap threshold),
or the heap's top is trimmed, so resident memory rises and falls with every pass by hundreds of MiB
on a busy sensor, and a long run's samples look like a leak.  ``hold_freed_memory`` asks glibc
(``mallopt``) to serve every block from the heap and never to trim it: the memory a pass frees is
reused by the next one, resident memory stays at the high-water mark once the flows alive reach
their steady number (what the host must have for the sensor anyway), and passes cost less (no
fresh pages to fault in).  Only for ``portclass live``: a one-shot file run gives its memory back.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def hold_freed_memory() -> bool:
    """glibc: no mmap'ed blocks and no trimming from now on (this process and its forked children).
    False where the C library has no ``mallopt`` (not Linux, musl keeps its own policy)."""
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(M_MMAP_MAX, 0) == 1
        return ok and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return False
