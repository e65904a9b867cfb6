"""Concurrent writers: batches from several jobs interleave safely and the change log stays gapless."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import text

from core_factories import add_org, published
from onceonly.catalog.models import Resource
from onceonly.db import Database
from onceonly.ops.setup import initialize
from onceonly.store import service as store


@pytest.fixture(scope="module")
def ready(db: Database) -> Database:
    initialize(db)
    return db


def in_threads(n: int, work: Any) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


def test_concurrent_batches_on_one_resource(ready: Database) -> None:
    db = ready
    with db.session() as s:
        rid = published(s, add_org(s), query_fields=[]).id

    def job(i: int) -> None:
        with db.session(write=True) as s:
            res = s.get(Resource, rid)
            assert res is not None
            store.row_count(s, res)  # read first, as ingest does, then write
            time.sleep(0.05)
            store.upsert_rows(s, res, [{"id": f"j{i}-{k}", "n": k} for k in range(50)], batch_id=i)

    assert in_threads(4, job) == []
    with db.session() as s:
        res = s.get(Resource, rid)
        assert res is not None
        log = store.changes_since(s, res, 0, 10_000)
        assert [c.seq for c in log] == list(range(1, 201))
        assert store.row_count(s, res) == 200 and res.last_seq == 200
        # each batch got one contiguous block of sequence numbers
        for batch in range(4):
            seqs = [c.seq for c in log if c.batch_id == batch]
            assert seqs == list(range(seqs[0], seqs[0] + 50))


def test_sqlite_writers_wait_instead_of_failing(sqlite_db: Database) -> None:
    """A unit of work that reads and then writes must not fail because another one committed."""
    with sqlite_db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t_concurrency (i INTEGER)"))

    def unit(i: int) -> None:
        with sqlite_db.session(write=True) as s:
            s.execute(text("SELECT count(*) FROM t_concurrency")).scalar()
            time.sleep(0.1)
            s.execute(text("INSERT INTO t_concurrency VALUES (:i)"), {"i": i})

    assert in_threads(4, unit) == []
    with sqlite_db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t_concurrency")).scalar() == 4
    # a reader is not blocked by a writer holding the lock (WAL)
    with sqlite_db.session(write=True) as w:
        w.execute(text("INSERT INTO t_concurrency VALUES (99)"))
        with sqlite_db.session() as r:
            assert r.execute(text("SELECT count(*) FROM t_concurrency")).scalar() == 4
