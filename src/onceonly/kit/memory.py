"""Giving freed heap memory back to the operating system during long loads.

A load allocates and frees the same shapes chunk after chunk (rows, stage columns, driver
buffers). glibc's malloc keeps freed memory in its arenas for reuse, but fragmentation lets the
resident set creep upward across millions of rows although the live objects stay few.
`malloc_trim(0)` returns the free pages of every arena; called between chunks it keeps a
process's resident memory near what it actually holds. Elsewhere than glibc it does nothing.

The same loads also keep Python's cycle collector busy for nothing: see `bulk_allocations`; and
so does a server answering requests: see `serving`."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


_GC_LOCK = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None
_gc_froze = False
BULK_GC_THRESHOLD = 20_000


@contextmanager
def bulk_allocations() -> Iterator[None]:
    """Keep Python's cycle collector out of a long load's way.

    A load allocates millions of short-lived containers (rows, cells, driver tuples) while a
    chunk's worth stays alive. With the default thresholds that triggers thousands of young
    collections and, every ~100k promoted objects, a full collection that walks every object of
    the process (imports included): measured, a third of an initial load's time. Inside this
    block the objects that existed before are frozen (never walked again until the block ends)
    and a young collection waits for 20,000 net new containers instead of 700. Cycles are still
    collected. Nestable and thread-safe: the settings are the process's, so the first block to
    enter changes them and the last to leave restores them. If something else froze objects
    before (a server that freezes its heap before forking), this leaves the freeze alone, as it
    could not undo its own part without undoing theirs."""
    global _gc_users, _gc_saved, _gc_froze
    with _GC_LOCK:
        _gc_users += 1
        if _gc_users == 1:
            _gc_saved = gc.get_threshold()
            _gc_froze = gc.get_freeze_count() == 0
            if _gc_froze:
                gc.freeze()
            gc.set_threshold(max(BULK_GC_THRESHOLD, _gc_saved[0]), *_gc_saved[1:])
    try:
        yield
    finally:
        with _GC_LOCK:
            _gc_users -= 1
            if _gc_users == 0 and _gc_saved is not None:
                gc.set_threshold(*_gc_saved)
                if _gc_froze:
                    gc.unfreeze()
                _gc_saved, _gc_froze = None, False


def settle_for_bulk_work() -> None:
    """For a process that only does bulk work from here on (a checking worker): freeze what
    its start-up built and collect young objects rarely (see `bulk_allocations`)."""
    gc.freeze()
    low, mid, old = gc.get_threshold()
    gc.set_threshold(max(BULK_GC_THRESHOLD, low), mid, old)


SERVER_GC_THRESHOLD = 10_000
_serving = 0
_serving_saved: tuple[tuple[int, int, int], bool] | None = None


@contextmanager
def serving() -> Iterator[None]:
    """Keep Python's cycle collector out of a serving process's way (the app's lifespan).

    Every request allocates a few hundred short-lived containers, so with the default
    thresholds a young collection ran every other request, and the full ones walked the whole
    heap of imports, routes and ORM mappings: measured, about 8 % of the server's CPU under
    load. What start-up built is frozen (never walked again) and a young collection waits for
    10,000 net new containers. Cycles are still collected. Apps of one process (tests start
    many) share the settings: the first to start changes them, the last to stop restores them
    and unfreezes the heap, unless something else had frozen it before."""
    global _serving, _serving_saved
    with _GC_LOCK:
        _serving += 1
        if _serving == 1:
            gc.collect()
            _serving_saved = (gc.get_threshold(), gc.get_freeze_count() == 0)
            if _serving_saved[1]:
                gc.freeze()
            gc.set_threshold(max(SERVER_GC_THRESHOLD, _serving_saved[0][0]), *_serving_saved[0][1:])
    try:
        yield
    finally:
        with _GC_LOCK:
            _serving -= 1
            if _serving == 0 and _serving_saved is not None:
                gc.set_threshold(*_serving_saved[0])
                if _serving_saved[1]:
                    gc.unfreeze()
                _serving_saved = None
