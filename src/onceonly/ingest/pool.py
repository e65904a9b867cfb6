"""Row checking beside the writer: chunks of raw rows go to worker processes, which coerce and
check them (checks.RowChecker) and send back typed rows or problems, in order.

The writing process keeps everything that depends on order or on the database: reading the
file, the unchanged-row digests, key uniqueness (keyguard), quarantine and the store. A worker
holds no database connection and writes nothing, so killing either process at any moment leaves
the store as the batch's transaction left it: rolled back. Workers are spawned (never forked:
the server runs batches on threads), and leave when the writing process disappears."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from types import SimpleNamespace
from typing import Any, Protocol

from onceonly.ingest.checks import RowChecker
from onceonly.ingest.fastpath import RowDigests
from onceonly.ingest.types import Problem
from onceonly.kit.memory import release_free_memory, settle_for_bulk_work
from onceonly.store.upsert import StageFormat

MIN_PARALLEL_BYTES = 32 << 20


@dataclass
class Checked:
    """A chunk's outcome: the accepted rows as stage columns (driver-ready, `StageFormat`) plus
    typed columns of the fields uniqueness looks at; the rejected rows with their problems.
    Positions are into the rows submitted. Columns, not dicts: they cross a process boundary."""

    ok: list[int]
    columns: list[list[Any]]
    guarded: dict[str, list[Any]]
    rejected: list[tuple[int, list[Problem]]]
    digests: list[int] | None = None  # of the accepted rows, when the job digests (initial loads)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "columns": [pack(c) for c in self.columns],
                "guarded": {f: pack(c) for f, c in self.guarded.items()}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.columns = [unpack(c) for c in self.columns]
        self.guarded = {f: unpack(c) for f, c in self.guarded.items()}


_SEP = "\x1f"  # ASCII unit separator


@dataclass
class Packed:
    """A column of text cells as one string, for the trip between processes: pickling one
    string is a copy, pickling ten thousand costs more than checking them. `nones`: positions
    holding None (packed as empty)."""

    text: str
    nones: list[int]


def pack(col: list[Any]) -> list[Any] | Packed:
    """`col` packed when every cell is text (or None) free of the separator, else `col` as is."""
    kinds = set(map(type, col))
    if not col or not kinds <= {str, type(None)}:
        return col
    nones = [i for i, v in enumerate(col) if v is None] if type(None) in kinds else []
    text = _SEP.join(col) if not nones else _SEP.join(v if v is not None else "" for v in col)
    if text.count(_SEP) != len(col) - 1:  # a cell holds the separator itself
        return col
    return Packed(text, nones)


def unpack(col: list[Any] | Packed) -> list[Any]:
    if not isinstance(col, Packed):
        return col
    values: list[Any] = col.text.split(_SEP)
    for i in col.nones:
        values[i] = None
    return values


@dataclass
class Job:
    """What checking needs besides the rows: the checker and the output's shape."""

    checker: RowChecker
    fmt: StageFormat
    guarded: list[str]
    digester: RowDigests | None = None


def check_chunk(job: Job, rows: list[list[Any]]) -> Checked:
    check = job.checker.check_row
    ok: list[int] = []
    typed: list[dict[str, Any]] = []
    rejected: list[tuple[int, list[Problem]]] = []
    for pos, values in enumerate(rows):
        out, problems = check(values)
        if out is not None and not problems:
            ok.append(pos)
            typed.append(out)
        else:
            rejected.append((pos, problems))
    digests = job.digester.of_values([rows[p] for p in ok]).tolist() if job.digester is not None else None
    return Checked(ok, job.fmt.columns(typed), {f: [r.get(f) for r in typed] for f in job.guarded}, rejected,
                   digests)


_job: Job | None = None


class Checks(Protocol):
    def submit(self, rows: list[list[Any]]) -> Future[Checked]: ...

    def close(self) -> None: ...


class InlineChecks:
    """Checks in the calling process (small files, one CPU, or workers turned off)."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def submit(self, rows: list[list[Any]]) -> Future[Checked]:
        done: Future[Checked] = Future()
        done.set_result(check_chunk(self.job, rows))
        return done

    def close(self) -> None:
        pass


class ProcessChecks:
    """Checks in worker processes, started when the first rows to check arrive: a re-ingest
    whose rows are all unchanged never pays for starting them."""

    def __init__(self, spec: dict[str, Any], job: Job, workers: int) -> None:
        self._spec, self._job, self._workers = spec, job, workers
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, rows: list[list[Any]]) -> Future[Checked]:
        if not rows:
            return InlineChecks(self._job).submit(rows)
        if self._pool is None:
            job = self._job
            self._pool = ProcessPoolExecutor(max_workers=self._workers, mp_context=get_context("spawn"),
                                             initializer=_start_worker,
                                             initargs=(self._spec, job.fmt, job.guarded, job.digester, os.getpid()))
        return self._pool.submit(_check_in_worker, rows)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def worker_count(setting: int, file_size: int) -> int:
    """The setting when given (> 0); automatic (-1): none below MIN_PARALLEL_BYTES, where
    starting a process costs more than it saves, else one less than the CPUs, at most 4."""
    if setting >= 0:
        return setting
    if file_size < MIN_PARALLEL_BYTES:
        return 0
    return max(0, min((os.cpu_count() or 1) - 1, 4))


def checker_spec(fields: Sequence[Any], key_fields: Sequence[str], code_sets: Mapping[str, set[str]],
                 local: Mapping[str, Mapping[str, str]], rules: Any, columns: Mapping[int, str],
                 width: int) -> dict[str, Any]:
    """What a worker needs to build the same RowChecker, as plain picklable data."""
    from sqlalchemy import inspect

    def plain(f: Any) -> dict[str, Any]:
        return {attr.key: getattr(f, attr.key) for attr in inspect(type(f)).column_attrs}

    return {"fields": [plain(f) for f in fields], "key_fields": list(key_fields), "code_sets": dict(code_sets),
            "local": {k: dict(v) for k, v in local.items()}, "rules": rules, "columns": dict(columns),
            "width": width}


def build_checker(spec: dict[str, Any]) -> RowChecker:
    fields = [SimpleNamespace(**f) for f in spec["fields"]]
    return RowChecker(fields, spec["key_fields"], spec["code_sets"], spec["local"], spec["rules"],
                      columns=spec["columns"], width=spec["width"], track_keys=False)


def _start_worker(spec: dict[str, Any], fmt: StageFormat, guarded: list[str], digester: RowDigests | None,
                  parent: int) -> None:
    global _job
    _job = Job(build_checker(spec), fmt, guarded, digester)
    threading.Thread(target=_leave_with, args=(parent,), daemon=True).start()
    settle_for_bulk_work()  # this process only checks chunks from now on


def _leave_with(parent: int) -> None:
    """A worker of a killed writer would otherwise wait for work forever."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _check_in_worker(rows: list[list[Any]]) -> Checked:
    assert _job is not None
    checked = check_chunk(_job, rows)
    release_free_memory()  # the chunk's rows and coerced values are gone: give their pages back
    return checked
