"""release_free_memory: freed heap pages go back to the OS between ingest chunks (glibc)."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from onceonly.kit.memory import release_free_memory


def _rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_memory_goes_back_to_the_os() -> None:
    """Many small objects freed leave their pages with malloc (below the mmap threshold); the
    trim hands them back, so the resident set falls."""
    held = [bytearray(1000) for _ in range(200_000)]  # ~200 MB in small blocks from malloc's heap
    keep = held[::997]  # a few survivors scattered over the heap
    del held
    before = _rss_kb()
    assert release_free_memory() is True
    after = _rss_kb()
    assert keep and before - after > 50_000, (before, after)  # at least 50 MB of the freed pages returned
    assert release_free_memory() is True  # again: harmless


def test_bulk_allocations_pause_the_collector_and_restore_it() -> None:
    """During a load the objects from before are frozen and young collections come rarely;
    nested and concurrent loads share that, and the last one out restores the settings."""
    import gc

    from onceonly.kit.memory import BULK_GC_THRESHOLD, bulk_allocations

    before = gc.get_threshold()
    gc.unfreeze()  # a clean start: nothing frozen by anyone else
    frozen_before = gc.get_freeze_count()
    with bulk_allocations():
        assert gc.get_threshold()[0] >= BULK_GC_THRESHOLD
        assert gc.get_freeze_count() > frozen_before
        with bulk_allocations():
            assert gc.get_threshold()[0] >= BULK_GC_THRESHOLD
        assert gc.get_threshold()[0] >= BULK_GC_THRESHOLD, "the outer load still runs"
        cycle: list[object] = []
        cycle.append(cycle)
        ref = id(cycle)
        del cycle
        gc.collect()  # cycles made during a load are still collectable
        assert all(id(o) != ref for o in gc.get_objects())
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen_before


def test_bulk_allocations_restore_after_an_error() -> None:
    import gc

    from onceonly.kit.memory import bulk_allocations

    before = gc.get_threshold()
    with pytest.raises(RuntimeError), bulk_allocations():
        raise RuntimeError("the load failed")
    assert gc.get_threshold() == before


def test_bulk_allocations_leave_someone_elses_freeze_alone() -> None:
    """A process that froze its heap itself (before forking workers, say) keeps it frozen."""
    import gc

    from onceonly.kit.memory import bulk_allocations

    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        # Not an exact count: a frozen object freed meanwhile (by another test's thread still
        # winding down) leaves the frozen generation. Unfreezing would empty it.
        with bulk_allocations():
            assert gc.get_freeze_count() > frozen - 1000
        assert gc.get_freeze_count() > frozen - 1000
    finally:
        gc.unfreeze()


def test_a_serving_app_freezes_its_start_up_heap_and_collects_young_objects_rarely(tmp_path: Path) -> None:
    """What the app's lifespan does for the time it serves (kit.memory.serving): start-up
    objects frozen, young collections every 10,000 containers, cycles still collected; and
    everything as before once it stops, with a load inside it (bulk_allocations) nesting."""
    import gc

    from fastapi.testclient import TestClient

    from harness import open_database
    from onceonly.app import create_app
    from onceonly.kit.memory import BULK_GC_THRESHOLD, SERVER_GC_THRESHOLD, bulk_allocations

    before = gc.get_threshold()
    gc.unfreeze()
    db = open_database(tmp_path)
    with TestClient(create_app(db.settings, db)) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_threshold()[0] >= SERVER_GC_THRESHOLD
        assert gc.get_freeze_count() > 0
        with bulk_allocations():
            assert gc.get_threshold()[0] >= BULK_GC_THRESHOLD
        assert gc.get_threshold()[0] == max(SERVER_GC_THRESHOLD, before[0])
        assert gc.get_freeze_count() > 0, "a load inside leaves the server's freeze alone"
        cycle: list[object] = []
        cycle.append(cycle)
        ref = id(cycle)
        del cycle
        gc.collect()
        assert all(id(o) != ref for o in gc.get_objects())
    db.dispose()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
