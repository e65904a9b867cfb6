"""Checking in worker processes gives exactly what checking in the writer gives: the same counts,
the same rejected rows with the same rules, the same stored rows — over many small chunks in
flight, with unchanged, changed, new, bad and duplicate rows mixed (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ingest_factories import (
    PERSON_HEADER,
    World,
    bad_check_digit,
    cid,
    person_resource,
    person_row,
    person_rows,
    rejections_of,
    rows_by_key,
    write_csv,
)

from core_factories import CLI
from onceonly.catalog.models import Organization
from onceonly.db import Database
from onceonly.ingest import pool, service
from onceonly.ingest.schemas import IngestOptions


def run(w: World, path: Path, workers: int, **options: Any) -> Any:
    return service.ingest_file(w.db, CLI, w.ref, path, IngestOptions(**options), workers=workers)


def outcome(w: World, report: Any) -> tuple[Any, ...]:
    counts = (report.read, report.inserted, report.updated, report.unchanged, report.deleted, report.rejected)
    rejected = [(r.row_number, sorted(p["rule"] for p in r.problems)) for r in rejections_of(w.db, report.id)]
    return counts, rejected, report.rule_counts


def mixed_rows() -> list[list[Any]]:
    rows = person_rows(40)
    rows[3] = person_row(3, 子女数="5")                       # changed
    rows[5] = person_row(5, 公民身份号码=bad_check_digit(cid(5)))  # bad
    rows[9] = person_row(9, 手机号码="12")                     # bad
    rows += [person_row(1), person_row(3), person_row(12, 子女数="8")]  # duplicates of rows 2, 5 and 14
    rows += person_rows(10, start=100)                        # new
    rows += [person_row(100), person_row(9)]                  # a duplicate; a corrected row 9
    return rows


@pytest.mark.parametrize("mode", ["upsert", "replace"])
def test_workers_agree_with_the_writer(db: Database, org: Organization, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setattr(service, "CHUNK", 7)
    seed = write_csv(tmp_path / "seed.csv", PERSON_HEADER, person_rows(45))
    mixed = write_csv(tmp_path / "mixed.csv", PERSON_HEADER, mixed_rows())
    results = []
    for workers in (0, 2):
        w = World(db, org, person_resource(db, org))
        run(w, seed, workers)
        report = run(w, mixed, workers, mode=mode, force=True)
        assert report.status == "committed"
        results.append((outcome(w, report), rows_by_key(w.db, w.res.id)))
    (inline, inline_rows), (parallel, parallel_rows) = results
    assert parallel == inline
    assert parallel_rows == inline_rows
    counts, rejected, _ = inline
    assert counts[5] == len(rejected) >= 6


def test_worker_count() -> None:
    big = pool.MIN_PARALLEL_BYTES
    assert pool.worker_count(0, big * 10) == 0
    assert pool.worker_count(3, big) == 3
    assert pool.worker_count(3, 10) == 3, "an explicit setting holds whatever the size"
    assert pool.worker_count(-1, big - 1) == 0, "automatic: small files are checked in the writer"
    assert 0 <= pool.worker_count(-1, big) <= 4


def test_an_unchanged_file_starts_no_worker(db: Database, org: Organization, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers start with the first rows to check: re-ingesting an unchanged file (every row
    recognised by its digest) never pays for starting one; a changed file does."""
    started: list[int] = []
    real = pool.ProcessPoolExecutor

    def counting(*args: Any, **kwargs: Any) -> Any:
        started.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pool, "ProcessPoolExecutor", counting)
    monkeypatch.setattr(service, "CHUNK", 7)
    w = World(db, org, person_resource(db, org))
    rows = person_rows(30)
    path = write_csv(tmp_path / "people.csv", PERSON_HEADER, rows)
    assert run(w, path, 1).inserted == 30
    assert started == [1]
    again = run(w, path, 1)
    assert (again.unchanged, again.inserted, again.updated) == (30, 0, 0)
    assert started == [1], "no worker for a file with nothing to check"
    rows[20] = person_row(20, 子女数="6")
    changed = run(w, write_csv(tmp_path / "changed.csv", PERSON_HEADER, rows), 1)
    assert (changed.unchanged, changed.updated) == (29, 1)
    assert started == [1, 1]


@pytest.mark.parametrize("col", [
    ["110105194912310021", "张三", ""],
    ["a", None, "", None],
    [None],
    [""],
    ["含\x1f分隔符", "b"],       # the separator inside a cell: sent as a list
    ["2018-08-20", 3, None],    # not all text: sent as a list
    [],
])
def test_columns_cross_processes_unchanged(col: list[Any]) -> None:
    """Text columns travel between processes packed into one string; whatever the cells, the
    writer gets back exactly the column the worker made."""
    import pickle

    checked = pool.Checked([0], [col, list(col)], {"k": col}, [])
    back = pickle.loads(pickle.dumps(checked))
    assert back.columns == [col, col] and back.guarded == {"k": col}
    assert all(v is None for v, o in zip(back.columns[0], col, strict=True) if o is None)
    assert isinstance(pool.pack(col), pool.Packed) == (
        bool(col) and all(v is None or (isinstance(v, str) and "\x1f" not in v) for v in col))
