"""Two batches on the same key: the second waits for the first and sees its change (no lost update)."""

from __future__ import annotations

import threading
import time

from core_factories import add_org, published
from onceonly.catalog import service
from onceonly.db import Database
from onceonly.ops.setup import initialize
from onceonly.store import service as store


def test_concurrent_batches_on_one_key_lose_nothing(db: Database) -> None:
    initialize(db)
    with db.session() as s:
        res = published(s, add_org(s))
        rid = res.id
        store.upsert_rows(s, res, [{"id": "k1", "name": "start", "n": 0}])
    holding = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with db.session(write=True) as s:
                store.upsert_rows(s, service.get_resource(s, rid), [{"id": "k1", "name": "a"}])
                holding.set()
                time.sleep(0.5)  # the second batch starts while this one holds the lock
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            holding.set()

    t = threading.Thread(target=first)
    t.start()
    assert holding.wait(10)
    with db.session(write=True) as s:
        store.upsert_rows(s, service.get_resource(s, rid), [{"id": "k1", "n": 7}])
    t.join()
    assert not errors
    with db.session() as s:
        res = service.get_resource(s, rid)
        row = store.get_row(s, res, ("k1",))
        assert row is not None
        assert (row["name"], row["n"], row["_version"]) == ("a", 7, 3)
        assert [c.op for c in store.changes_since(s, res)] == ["I", "U", "U"]
