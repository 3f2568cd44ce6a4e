"""Keeping the server's resident memory bounded under concurrent requests.

FastAPI runs medkb's synchronous handlers on a pool of worker threads. glibc's malloc gives
each new thread its own arena (up to 8 per core), and memory freed in an arena is rarely
handed back to the system, so a burst of 32 concurrent requests leaves the heap spread over
many arenas and RSS stays high long after the burst (measured with `python -m
evals.loadtest`: RSS after a 32-client phase 1,265 MB with glibc's default, 948 MB with two
arenas, same run). Limiting the number of arenas is glibc's documented remedy (mallopt(3),
M_ARENA_MAX; the same as the MALLOC_ARENA_MAX environment variable, which must be set before
the process starts, whereas this can be called from `medkb serve`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# From glibc's <malloc.h>: #define M_ARENA_MAX -8
M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas for threads created from now on.

    arenas: the most arenas (>= 1); 0 leaves glibc's default alone.
    Returns True when the cap was set, False when it was not (0, not Linux, or a C library
    without mallopt, e.g. musl). Never raises for an unsupported platform.
    Raises ValueError for a negative count.
    """
    if arenas < 0:
        raise ValueError(f"arenas must be >= 0, got {arenas}")
    if arenas == 0 or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_ARENA_MAX, arenas) == 1
