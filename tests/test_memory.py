"""The malloc arena cap that `medkb serve` sets (medkb/memory.py)."""

import platform
import subprocess
import sys
import textwrap

import pytest

from medkb.memory import limit_malloc_arenas

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's")

# Eight threads allocate at the same time, then glibc's own report (malloc_info(3)) is read:
# its <heap nr="..."> elements are the arenas in use.
COUNT_ARENAS = textwrap.dedent("""
    import ctypes, ctypes.util, sys, tempfile, threading
    from medkb.memory import limit_malloc_arenas
    if sys.argv[1] != "default":
        assert limit_malloc_arenas(int(sys.argv[1]))
    barrier = threading.Barrier(8)
    kept = []
    def work():
        barrier.wait()
        kept.append([bytearray(4096) for _ in range(2000)])
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    with tempfile.NamedTemporaryFile(suffix=".xml") as out:
        f = libc.fopen(out.name.encode(), b"w")
        libc.malloc_info(0, f)
        libc.fclose(f)
        print(open(out.name).read().count("<heap nr="))
""")


def arenas_used(cap: str) -> int:
    done = subprocess.run([sys.executable, "-c", COUNT_ARENAS, cap], capture_output=True, text=True, timeout=120, check=True)
    return int(done.stdout.strip())


@glibc
def test_the_cap_bounds_the_arenas_that_concurrent_threads_use():
    assert arenas_used("default") > 2, "eight allocating threads should spread over several arenas by default"
    assert arenas_used("2") <= 2


def test_zero_leaves_the_default_and_a_negative_count_is_refused():
    assert limit_malloc_arenas(0) is False
    with pytest.raises(ValueError, match="arenas"):
        limit_malloc_arenas(-1)
