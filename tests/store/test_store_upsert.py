"""The store: upserts with change detection, soft deletes, the change log (the spine), atomic batches."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select, text

from core_factories import CLI, add_org, published, spec
from onceonly.catalog import service as catalog
from onceonly.catalog.models import Resource
from onceonly.db import Database
from onceonly.errors import Conflict, ValidationFailed
from onceonly.ops.setup import initialize
from onceonly.store import service as store
from onceonly.store.models import ChangeLog


@pytest.fixture(scope="module", autouse=True)
def ready(db: Database) -> None:
    initialize(db)


def new_resource(db: Database, **overrides: Any) -> int:
    with db.session() as s:
        return published(s, add_org(s), **overrides).id


def upsert(db: Database, res_id: int, rows: list[dict[str, Any]], batch_id: int | None = None) -> store.UpsertResult:
    with db.session() as s:
        return store.upsert_rows(s, s.get(Resource, res_id), rows, batch_id)  # type: ignore[arg-type]


def changes(db: Database, res_id: int, since: int = 0, limit: int = 1000) -> list[store.Change]:
    with db.session() as s:
        return store.changes_since(s, s.get(Resource, res_id), since, limit)  # type: ignore[arg-type]


def row(db: Database, res_id: int, *key: Any) -> dict[str, Any] | None:
    with db.session() as s:
        return store.get_row(s, s.get(Resource, res_id), key)  # type: ignore[arg-type]


def count(db: Database, res_id: int) -> int:
    with db.session() as s:
        return store.row_count(s, s.get(Resource, res_id))  # type: ignore[arg-type]


def person(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"p{i:05d}", "name": f"人员{i}", "n": i, "score": i / 4, "born": date(1980, 1, 1) + timedelta(days=i),
            "flag": i % 2 == 0, "ts": datetime(2024, 5, 1, 8, 30) + timedelta(minutes=i), **extra}


def test_insert_update_unchanged_counts(db: Database) -> None:
    rid = new_resource(db)
    first = upsert(db, rid, [person(1), person(2), person(3)], batch_id=7)
    assert (first.inserted, first.updated, first.unchanged) == (3, 0, 0)
    assert (first.first_seq, first.last_seq) == (1, 3)
    second = upsert(db, rid, [person(1), person(2, name="改名"), person(4)])
    assert (second.inserted, second.updated, second.unchanged) == (1, 1, 1)
    assert count(db, rid) == 4
    stored = row(db, rid, "p00002")
    assert stored is not None and stored["name"] == "改名" and stored["_version"] == 2
    assert stored["born"] == date(1980, 1, 3) and stored["flag"] is True and stored["n"] == 2
    assert stored["score"] == pytest.approx(0.5)
    assert [(c.seq, c.op, c.key) for c in changes(db, rid)] == [
        (1, "I", "p00001"), (2, "I", "p00002"), (3, "I", "p00003"), (4, "U", "p00002"), (5, "I", "p00004")]
    assert changes(db, rid)[0].batch_id == 7


def test_identical_reupsert_writes_nothing(db: Database) -> None:
    rid = new_resource(db)
    rows = [person(i) for i in range(1, 6)]
    upsert(db, rid, rows)
    before = row(db, rid, "p00003")
    with db.session() as s:
        last_seq = s.get(Resource, rid).last_seq  # type: ignore[union-attr]
    again = upsert(db, rid, [dict(r) for r in rows], batch_id=99)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 5)
    assert again.first_seq is None and again.last_seq is None
    assert len(changes(db, rid)) == 5
    after = row(db, rid, "p00003")
    assert after == before and after is not None and after["_version"] == 1 and after["_batch_id"] is None
    with db.session() as s:
        assert s.get(Resource, rid).last_seq == last_seq  # type: ignore[union-attr]


def test_identical_reupsert_with_aware_datetimes_writes_nothing(db: Database) -> None:
    """A datetime from a source with an offset is the same instant on every reload."""
    rid = new_resource(db)
    cst = timezone(timedelta(hours=8))
    rows = [person(1, ts=datetime(2024, 5, 1, 16, 30, tzinfo=cst)),
            person(2, ts=datetime(2024, 5, 1, 8, 0, tzinfo=UTC))]
    upsert(db, rid, rows)
    again = upsert(db, rid, rows)
    assert (again.updated, again.unchanged) == (0, 2)
    stored = row(db, rid, "p00001")
    assert stored is not None and stored["ts"] == datetime(2024, 5, 1, 8, 30, tzinfo=UTC)


def test_updates_bump_version_and_partial_rows_keep_other_fields(db: Database) -> None:
    rid = new_resource(db)
    upsert(db, rid, [person(1)])
    upsert(db, rid, [{"id": "p00001", "score": 9.5}], batch_id=3)
    upsert(db, rid, [{"id": "p00001", "flag": True}])
    stored = row(db, rid, "p00001")
    assert stored is not None
    assert (stored["score"], stored["flag"], stored["name"], stored["_version"]) == (9.5, True, "人员1", 3)
    assert stored["_updated_at"] >= stored["_created_at"]
    assert [c.op for c in changes(db, rid)] == ["I", "U", "U"]
    upsert(db, rid, [{"id": "p00001", "name": None}])  # setting a value to null is a change
    stored = row(db, rid, "p00001")
    assert stored is not None and stored["name"] is None and stored["_version"] == 4


def test_delete_then_reinsert(db: Database) -> None:
    rid = new_resource(db)
    upsert(db, rid, [person(1), person(2), person(3)])
    with db.session() as s:
        res = s.get(Resource, rid)
        assert res is not None
        assert store.delete_keys(s, res, [("p00002",), ("missing",)], batch_id=5) == 1
    assert count(db, rid) == 2
    log = changes(db, rid)
    assert (log[-1].op, log[-1].key, log[-1].batch_id) == ("D", "p00002", 5)
    with db.session() as s:  # deleting again is not another change
        assert store.delete_keys(s, s.get(Resource, rid), [("p00002",)]) == 0  # type: ignore[arg-type]
        assert [r["id"] for r in store.fetch_rows(s, s.get(Resource, rid))] == ["p00001", "p00003"]  # type: ignore[arg-type]
    assert len(changes(db, rid)) == 4
    back = upsert(db, rid, [person(2)])
    assert (back.inserted, back.updated, back.unchanged) == (1, 0, 0)
    assert count(db, rid) == 3
    assert [c.op for c in changes(db, rid)] == ["I", "I", "I", "D", "I"]
    stored = row(db, rid, "p00002")
    assert stored is not None and not stored["_deleted"] and stored["_version"] == 3


def test_change_log_is_ordered_strictly_increasing_and_per_resource(db: Database) -> None:
    a, b = new_resource(db), new_resource(db)
    upsert(db, a, [person(i) for i in range(10)])
    upsert(db, b, [person(i) for i in range(3)])
    upsert(db, a, [person(i, name="x") for i in range(5)])
    with db.session() as s:
        store.delete_keys(s, s.get(Resource, b), [("p00001",)])  # type: ignore[arg-type]
    seq_a = [c.seq for c in changes(db, a)]
    seq_b = [c.seq for c in changes(db, b)]
    assert seq_a == list(range(1, 16))
    assert seq_b == [1, 2, 3, 4]
    # reading by cursor resumes exactly after what was seen
    page1 = changes(db, a, since=0, limit=6)
    page2 = changes(db, a, since=page1[-1].seq, limit=6)
    page3 = changes(db, a, since=page2[-1].seq, limit=6)
    assert [c.seq for c in page1 + page2 + page3] == seq_a
    assert changes(db, a, since=15) == []
    with db.session() as s:
        assert s.get(Resource, a).last_seq == 15  # type: ignore[union-attr]


def test_failing_batch_leaves_table_and_log_untouched(db: Database) -> None:
    rid = new_resource(db)
    upsert(db, rid, [person(0)])
    rows = [person(i) for i in range(1, store.CHUNK + 1)]  # one whole chunk, valid
    rows += [person(store.CHUNK + 1), {**person(store.CHUNK + 2), "id": None}]  # the second chunk fails
    with pytest.raises(ValidationFailed) as info, db.session() as s:
        store.upsert_rows(s, s.get(Resource, rid), rows)  # type: ignore[arg-type]
    assert info.value.field == "id"
    assert count(db, rid) == 1
    assert [c.key for c in changes(db, rid)] == ["p00000"]
    with db.session() as s:
        assert s.get(Resource, rid).last_seq == 1  # type: ignore[union-attr]
        res = s.get(Resource, rid)
        assert res is not None
        total = s.execute(text(f'SELECT count(*) FROM "{res.table_name}"')).scalar_one()
        assert total == 1
    # the sequence continues without a gap
    assert upsert(db, rid, [person(1)]).first_seq == 2


def test_large_batch_spans_chunks(db: Database) -> None:
    rid = new_resource(db)
    n = store.CHUNK * 2 + 17
    result = upsert(db, rid, [person(i) for i in range(n)])
    assert (result.inserted, result.first_seq, result.last_seq) == (n, 1, n)
    assert count(db, rid) == n
    with db.session() as s:
        res = s.get(Resource, rid)
        assert s.scalar(select(func.count()).select_from(ChangeLog).where(ChangeLog.resource_id == rid)) == n
        assert res is not None and res.last_seq == n


def test_repeated_key_in_one_batch_last_row_wins(db: Database) -> None:
    rid = new_resource(db)
    result = upsert(db, rid, [person(1, name="first"), person(1, name="second")])
    assert result.inserted == 1
    assert row(db, rid, "p00001")["name"] == "second"  # type: ignore[index]


def test_composite_keys(db: Database) -> None:
    rid = new_resource(db, key_fields=["id", "born"], query_fields=["name"])
    d1, d2 = date(2020, 1, 1), date(2021, 1, 1)
    first = upsert(db, rid, [person(1, born=d1), person(1, born=d2), person(2, born=d1)])
    assert first.inserted == 3
    second = upsert(db, rid, [person(1, born=d1, name="改"), person(1, born=d2)])
    assert (second.updated, second.unchanged) == (1, 1)
    with db.session() as s:
        assert store.delete_keys(s, s.get(Resource, rid), [("p00001", d2)]) == 1  # type: ignore[arg-type]
    assert count(db, rid) == 2
    assert row(db, rid, "p00001", d1)["name"] == "改"  # type: ignore[index]
    log = changes(db, rid)
    assert [c.op for c in log] == ["I", "I", "I", "U", "D"]
    assert json.loads(log[3].key) == ["p00001", "2020-01-01"]
    assert json.loads(log[4].key) == ["p00001", "2021-01-01"]


@pytest.mark.parametrize(("bad_row", "field"), [
    ({"id": "p1", "colour": "red"}, "colour"),
    ({"id": "p1", "_version": 9}, "_version"),
    ({"name": "no key"}, "id"),
    ({"id": None, "name": "null key"}, "id"),
])
def test_bad_rows_are_refused_naming_the_field(db: Database, bad_row: dict[str, Any], field: str) -> None:
    rid = new_resource(db)
    with pytest.raises(ValidationFailed) as info, db.session() as s:
        store.upsert_rows(s, s.get(Resource, rid), [person(1), bad_row])  # type: ignore[arg-type]
    assert info.value.field == field and field in info.value.message
    assert count(db, rid) == 0 and changes(db, rid) == []


def test_upsert_on_a_draft_is_refused(db: Database) -> None:
    with db.session() as s:
        draft = catalog.create_resource(s, CLI, spec(add_org(s)))
        with pytest.raises(Conflict) as info:
            store.upsert_rows(s, draft, [person(1)])
        assert "publish" in info.value.message
        with pytest.raises(Conflict):
            store.delete_keys(s, draft, [("p00001",)])
        assert store.row_count(s, draft) == 0


def test_empty_batch_is_a_no_op(db: Database) -> None:
    rid = new_resource(db)
    result = upsert(db, rid, [])
    assert (result.inserted, result.updated, result.unchanged, result.first_seq) == (0, 0, 0, None)
    with db.session() as s:
        assert store.delete_keys(s, s.get(Resource, rid), []) == 0  # type: ignore[arg-type]
    assert changes(db, rid) == []


def test_fetch_rows_pages_in_key_order(db: Database) -> None:
    rid = new_resource(db)
    upsert(db, rid, [person(i) for i in (5, 3, 9, 1)])
    with db.session() as s:
        res = s.get(Resource, rid)
        assert res is not None
        assert [r["id"] for r in store.fetch_rows(s, res, limit=2)] == ["p00001", "p00003"]
        assert [r["id"] for r in store.fetch_rows(s, res, limit=2, offset=2)] == ["p00005", "p00009"]
        assert "_version" not in store.fetch_rows(s, res, limit=1)[0]
        assert store.get_row(s, res, ("nope",)) is None
