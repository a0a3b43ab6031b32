"""Keep freed chunk buffers for reuse instead of handing them back to the OS (glibc only).

Every 1 MiB chunk read and every deflated piece is a new bytes object. With glibc's default
malloc settings the heap is trimmed and grown again around them, so the pages of nearly
every chunk are faulted in and zeroed anew: ~4,700 page faults and ~16% of the CPU of a
32 MiB build (more when two builds fault side by side under ``doit -n 2``). Once per
process, before the first build, we ask glibc to serve allocations up to 4 MiB from the
heap and to keep up to 32 MiB of free heap: the same buffers are reused, with no change in
peak memory. Allocations above 4 MiB are still mapped and unmapped as before.

This is process-wide, so it is applied only where mar_tasks owns the process: the
``mar-archive`` command. Inside someone else's process (their doit run, their script
calling :func:`mar_tasks.build_archive`) it is opt-in: ``build_archive(...,
tune_malloc=True)``, or ``MAR_TASKS_TUNE_MALLOC=1`` for the doit tasks. It is skipped where
the C library has no ``mallopt`` and when the user tunes malloc through the environment
(``MALLOC_*_`` variables or ``GLIBC_TUNABLES``).
"""
from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 32 << 20

_applied: "bool | None" = None  # None: not tried yet


def keep_freed_memory() -> bool:
    """Apply the settings above once per process; return whether they are in effect."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if "GLIBC_TUNABLES" in os.environ or any(k.startswith("MALLOC_") for k in os.environ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # no such C library (TypeError: Windows)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
