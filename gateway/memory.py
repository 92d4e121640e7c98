"""Returning memory to the operating system (glibc's malloc; a no-op elsewhere).

A worker that decoded a large image or parsed a large body frees the memory, but
glibc keeps it: in one arena per thread that ever allocated (8 x cores of them by
default) and at the top of each heap. Measured on the gateway: eight 6320x6320 PNG
requests left a worker at 4.8 GB. Two arenas (MALLOC_ARENA_MAX), large blocks
mapped on their own and a trim after each burst of large work give it back:
eight concurrent 4096x4096 PNGs now raise a worker by ~310 MiB at the peak (two
decodes at a time, ~156 MiB each; ~450 MiB with glibc's moving threshold) and
leave it where it was. gunicorn's max_requests replaces a worker now and then for
whatever still leaks.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

ARENAS = 2          # gthread workers run many threads; two arenas keep fragmentation to two heaps
# Blocks this large or larger are mapped on their own and unmapped when freed (glibc's
# default moves the threshold up to 32 MiB after the first large free, after which
# Pillow's 16 MiB image blocks land in the heaps and fragment them).
MMAP_THRESHOLD = 1024 * 1024
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8   # mallopt parameters (glibc malloc.h)


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap malloc's arenas in this process and the workers it forks (MALLOC_ARENA_MAX,
    set from inside: it works however the gateway is started), and map large blocks
    on their own (M_MMAP_THRESHOLD)."""
    libc = _libc()
    return bool(libc and libc.mallopt(_M_ARENA_MAX, arenas) and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def trim() -> bool:
    """Give the free memory at the top of malloc's heaps back to the system."""
    libc = _libc()
    return bool(libc and libc.malloc_trim(0))
