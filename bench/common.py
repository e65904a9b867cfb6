"""Plumbing shared by the benchmarks: child processes per phase, peak RSS, the machine, the
throwaway PostgreSQL server of the test suite, and a plain-text table.

Every measured phase runs in a fresh *spawned* child process, so its peak RSS (VmHWM) is the
phase's own and not inherited from the parent or an earlier phase. Keep this module's top-level
imports to the standard library: spawned children import the benchmark script again."""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib.metadata
import importlib.util
import multiprocessing
import os
import platform
import resource
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"  # gitignored cache of generated inputs

T = TypeVar("T")


def in_child(fn: Callable[..., T], *args: Any) -> T:
    """Run fn(*args) in a fresh spawned process and return its result (exceptions propagate)."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (VmHWM; ru_maxrss elsewhere)."""
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if sys.platform == "darwin":
            kb //= 1024
    return round(kb / 1024, 1)


def rss_mb() -> float:
    """Current resident set size in MiB (0 when /proc is not available)."""
    kb = _status_kb("VmRSS")
    return round((kb or 0) / 1024, 1)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    versions: dict[str, str | None] = {}
    for dist in ("sqlalchemy", "psycopg"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gb": mem_gb, "os": platform.platform(),
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version, **versions}


def load_harness() -> ModuleType:
    """tests/harness.py (throwaway PostgreSQL servers), imported by path: tests/ is no package."""
    path = ROOT / "tests" / "harness.py"
    spec = importlib.util.spec_from_file_location("onceonly_test_harness", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def hermetic_env(home: Path) -> None:
    """A developer's ONCEONLY_* settings must not leak into a benchmark (as in tests/conftest.py)."""
    for name in list(os.environ):
        if name.startswith("ONCEONLY_") and not name.startswith("ONCEONLY_TEST_"):
            del os.environ[name]
    os.environ["ONCEONLY_HOME"] = str(home)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width table: text columns left-aligned, numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    numeric = [all(isinstance(row[i], int | float) or row[i] is None for row in rows) for i in range(len(header))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True))

    out = [line(list(header)), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(s.rstrip() for s in out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
