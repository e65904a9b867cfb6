"""Giving freed heap memory back to the operating system during long loads.

A load allocates and frees the same shapes chunk after chunk (rows, stage columns, driver
buffers). glibc's malloc keeps freed memory in its arenas for reuse, but fragmentation lets the
resident set creep upward across millions of rows although the live objects stay few.
`malloc_trim(0)` returns the free pages of every arena; called between chunks it keeps a
process's resident memory near what it actually holds. Elsewhere than glibc it does nothing."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
_loaded = False


def _load() -> Callable[[int], int] | None:
    global _trim, _loaded
    if not _loaded:
        _loaded = True
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            fn = libc.malloc_trim
            fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
            _trim = fn
        except (OSError, AttributeError):  # not glibc: nothing to trim with
            _trim = None
    return _trim


def release_free_memory() -> bool:
    """Return free heap pages to the OS; True if the C library could (glibc)."""
    trim = _load()
    if trim is None:
        return False
    trim(0)
    return True
