"""The C heap's policy for the daemon's process: memory a check freed is kept for the next check.

Why: each check makes temporaries of hundreds of KB to a few MB (the decoded
frame, its grey and halved copies, the focus grid's Laplacian and its powers,
the model's input). glibc's malloc hands blocks that large out by ``mmap`` and
gives them back to the kernel when freed, and it trims a heap whose free top
grows past a threshold, so every check had the kernel map and zero every page
of them again: in process, the statistics of a 720p frame took 3.3 ms with the
heap kept and 5.4 ms without (``docs/performance.md`` has the daemon's figure).

Kept within bounds: a block over ``MMAP_THRESHOLD`` (a 4K colour frame is
25 MB, under it) still comes from and goes back to the kernel, and a heap
keeps at most ``TRIM_THRESHOLD`` free at its top; what it keeps is what a check
used at its peak, reused by the next one rather than grown. glibc reads its
own ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` at start: an
operator who set either keeps them, and a C library without ``mallopt``
(musl, macOS) is left as it is.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger(__name__)

#: Blocks at least this large are mapped and unmapped one by one (glibc's ``M_MMAP_THRESHOLD``).
MMAP_THRESHOLD = 32 << 20
#: A heap returns its free top to the kernel past this (glibc's ``M_TRIM_THRESHOLD``).
TRIM_THRESHOLD = 32 << 20
#: glibc's ``mallopt`` parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: The environment variables through which glibc takes the same settings.
OPERATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_freed_memory(environ: dict[str, str] | None = None) -> bool:
    """Set the heap's thresholds for a long-running daemon; False where the C library has no ``mallopt``
    or the operator set them in the environment (then nothing is changed)."""
    env = os.environ if environ is None else environ
    if any(name in env for name in OPERATOR_SETTINGS):
        log.debug("heap: the environment sets malloc's thresholds; left as set")
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        log.debug("heap: this C library has no mallopt; its defaults stay")
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # Each returns 1 on success; the mmap threshold first, since setting it stops glibc moving both.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
