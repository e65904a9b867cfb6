"""Each data-plane mode end to end over HTTP on SQLite and PostgreSQL: verify, query, api (a
record by key, composite keys too), the change feed and the export in every format, with the
values of every field type answered alike by all of them."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gc
import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from exchange_factories import PERSON_ROWS, add_service, fresh
from test_exchange_data_kit import BASE, Plane, audit_head, audit_since, make_plane, one_audit, problem, rows_of

from core_factories import fields as all_type_fields
from core_factories import lock_watchdog, published, unique
from onceonly.catalog.models import Resource
from onceonly.db import Database
from onceonly.exchange import calls
from onceonly.exchange.models import Service
from onceonly.store import service as store

TYPED_ROWS: list[dict[str, Any]] = [
    {"id": "a,1", "n": 1, "name": 'say "hi"\nthere', "score": 1.5, "born": date(1990, 1, 2), "flag": True,
     "ts": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)},
    {"id": "a,1", "n": 2, "name": "张三", "score": -2.0, "born": None, "flag": False,
     "ts": datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)},
    {"id": "b", "n": 1, "name": None, "score": None, "born": date(2000, 12, 31), "flag": None, "ts": None},
]
TYPED_WIRE = [
    {"id": "a,1", "n": 1, "name": 'say "hi"\nthere', "score": 1.5, "born": "1990-01-02", "flag": True,
     "ts": "2026-01-02T03:04:05.678901Z"},
    {"id": "a,1", "n": 2, "name": "张三", "score": -2.0, "born": None, "flag": False,
     "ts": "2026-05-06T07:08:09.000000Z"},
    {"id": "b", "n": 1, "name": None, "score": None, "born": "2000-12-31", "flag": None, "ts": None},
]


@pytest.fixture(scope="module")
def p(db: Database) -> Iterator[Plane]:
    plane = make_plane(db)
    roomy = {"daily_quota": 1_000_000, "rate_limit": 10_000}
    plane.grant("verify", ["citizen_id", "name", "phone", "household"], **roomy)
    plane.grant("query", ["citizen_id", "name", "region", "household", "note"], masking={"name": "name"}, **roomy)
    plane.grant("api", ["citizen_id", "name", "sex"], masking={}, **roomy)
    plane.grant("bulk", ["citizen_id", "name", "region", "household"], masking={"citizen_id": "citizen_id"}, **roomy)
    yield plane
    plane.http.close()


@pytest.fixture(scope="module")
def typed(db: Database, p: Plane) -> dict[str, Service]:
    """A resource with every field type and a composite key (id, n), in query, api and bulk."""
    with db.session(write=True) as s:
        res = published(s, fresh(s, p.w.provider), name=unique("typed"), key_fields=["id", "n"],
                        query_fields=["name", "score", "born", "flag", "ts"], fields=all_type_fields())
        store.upsert_rows(s, res, [dict(r) for r in TYPED_ROWS])
        services = {m: add_service(s, res, m) for m in ("query", "api", "bulk")}
    names = [f["name"] for f in all_type_fields()]
    for mode, service in services.items():
        p.services[f"typed-{mode}"] = service
        p.grant(f"typed-{mode}", names)
    return services


# -- verify ------------------------------------------------------------------------------------

def test_verify_answers_yes_no_and_never_values(db: Database, p: Plane) -> None:
    zhang, li, wang = PERSON_ROWS
    records = [
        {"citizen_id": zhang["citizen_id"].lower(), "name": " 张三明 "},  # lower-case x, spaces
        {"citizen_id": li["citizen_id"], "name": "李四", "phone": "139 0000 1111", "household": "2"},
        {"citizen_id": wang["citizen_id"], "name": "王六", "household": 3},
        {"citizen_id": "110105199001010000"},  # no such person
        {"citizen_id": "not an id", "name": None},
    ]
    before = audit_head(db)
    r = p.post(f"/{p.code('verify')}/verify", json={"records": records}, headers={"X-OnceOnly-Purpose": "case-7"})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results == [
        {"exists": True, "match": True, "fields": {"name": True}},
        {"exists": True, "match": True, "fields": {"name": True, "phone": True, "household": True}},
        {"exists": True, "match": False, "fields": {"name": False, "household": True}},
        {"exists": False, "match": False, "fields": {}},
        {"exists": False, "match": False, "fields": {"name": False}},
    ]
    assert r.json()["count"] == 5
    for row in PERSON_ROWS:  # no stored value in the answer (beyond what was sent)
        assert row["phone"] not in r.text and row["sex"] not in json.dumps(results).replace("true", "")
    one_audit(db, before, mode="verify", status=200, records=5, purpose="case-7", bytes=len(r.content))


def test_verify_batch_limits_and_shape(db: Database, p: Plane) -> None:
    code = p.code("verify")
    ok = p.post(f"/{code}/verify", json={"records": [{"citizen_id": "11010519900101002X"}] * 1000})
    assert ok.status_code == 200 and len(ok.json()["results"]) == 1000
    before = audit_head(db)
    too_many = p.post(f"/{code}/verify", json={"records": [{"citizen_id": "11010519900101002X"}] * 1001})
    problem(too_many, 413, "batch-too-large", "records")
    one_audit(db, before, mode="verify", status=413, records=0)
    problem(p.post(f"/{code}/verify", content=b'{"records": [', headers={"Content-Type": "application/json"}),
            400, "invalid-request", "body")
    problem(p.post(f"/{code}/verify", content=b"\xff\xfe", headers={"Content-Type": "application/json"}),
            400, "invalid-request", "body")
    problem(p.post(f"/{code}/verify", json=[1, 2]), 400, "invalid-request", "records")
    problem(p.post(f"/{code}/verify", json={"records": []}), 400, "invalid-request", "records")
    problem(p.post(f"/{code}/verify", json={"records": [{"name": "张三明"}]}), 400, "invalid-request",
            "records[0].citizen_id")
    problem(p.post(f"/{code}/verify", json={"records": [{"citizen_id": "x", "name": {"a": 1}}]}), 400,
            "invalid-request", "records[0].name")
    problem(p.post(f"/{code}/verify", json={"records": [{"citizen_id": "x", "sex": "1"}]}), 403,
            "field-not-granted", "sex")
    problem(p.post(f"/{code}/verify", json={"records": [{"citizen_id": "x", "no_such": "1"}]}), 400,
            "invalid-request", "no_such")
    problem(p.post(f"/{code}/verify", json={"records": [{"Bad Name": "1"}]}), 400, "invalid-request", "records[0]")


# -- query -------------------------------------------------------------------------------------

def test_query_filters_projection_sort_and_pages(p: Plane) -> None:
    code = p.code("query")
    rows = rows_of(p.get(f"/{code}/records", params={"region": "341802", "sort": "-household"}))
    assert [r["household"] for r in rows] == [3, 1]
    assert rows[1]["name"] == "张*明"  # masked
    assert rows_of(p.get(f"/{code}/records", params={"region": "in:341803,999999"}))[0]["household"] == 2
    assert [r["household"] for r in rows_of(p.get(f"/{code}/records",
                                                  params=[("household", "ge:2"), ("household", "lt:3")]))] == [2]
    assert [r["household"] for r in rows_of(p.get(f"/{code}/records", params={"household": "gt:1",
                                                                                "sort": "household"}))] == [2, 3]
    projected = p.get(f"/{code}/records", params={"fields": "household,region", "household": "eq:1"})
    assert projected.json()["fields"] == ["region", "household"]
    assert rows_of(projected) == [{"region": "341802", "household": 1}]
    assert rows_of(p.get(f"/{code}/records", params={"filter.name": "张三明"}))[0]["household"] == 1  # eq on masked
    first = p.get(f"/{code}/records", params={"limit": 2, "sort": "household"}).json()
    assert first["count"] == 2 and first["next_cursor"]
    second = p.get(first["next"].removeprefix("/api/v1/exchange")).json()
    assert [r["household"] for r in second["records"]] == [3] and second["next"] is None


def test_query_refusals_name_the_field(p: Plane) -> None:
    code = p.code("query")
    problem(p.get(f"/{code}/records", params={"note": "甲"}), 400, "invalid-request", "note")  # not indexed
    problem(p.get(f"/{code}/records", params={"phone": "1"}), 403, "field-not-granted", "phone")
    problem(p.get(f"/{code}/records", params={"nope": "1"}), 400, "invalid-request", "nope")
    problem(p.get(f"/{code}/records", params={"fields": "name,phone"}), 403, "field-not-granted", "phone")
    problem(p.get(f"/{code}/records", params={"name": "ge:张"}), 403, "field-not-granted", "name")  # masked: no range
    problem(p.get(f"/{code}/records", params={"sort": "name"}), 403, "field-not-granted", "name")
    problem(p.get(f"/{code}/records", params={"household": "ge:x"}), 400, "invalid-request", "household")
    problem(p.get(f"/{code}/records", params={"limit": "1001"}), 400, "invalid-request", "limit")
    problem(p.get(f"/{code}/records", params={"sort": "a,b,c,d"}), 400, "invalid-request", "sort")
    problem(p.get(f"/{code}/records", params=[("limit", "1"), ("limit", "2")]), 400, "invalid-request", "limit")
    problem(p.get(f"/{code}/records", params={"Region": "1"}), 400, "invalid-request", "Region")
    problem(p.get("/S9999/records"), 404, "not-found", "service")
    problem(p.get(f"/{p.code('verify')}/records"), 403, "mode-not-offered", "mode")


# -- api ---------------------------------------------------------------------------------------

def _found_and_absent_records(db: Database, p: Plane) -> None:
    """A record by key (200) and an absent one (404), each audited once."""
    code = p.code("api")
    zhang = PERSON_ROWS[0]
    before = audit_head(db)
    r = p.get(f"/{code}/records/{zhang['citizen_id']}")
    assert r.status_code == 200, r.text
    assert r.json()["record"] == {"citizen_id": zhang["citizen_id"], "name": "张三明", "sex": "2"}
    one_audit(db, before, mode="api", status=200, records=1)
    before = audit_head(db)
    problem(p.get(f"/{code}/records/110105199001010000"), 404, "record-not-found", "key")
    one_audit(db, before, mode="api", status=404, records=0)


def test_record_by_key(db: Database, p: Plane) -> None:
    code = p.code("api")
    zhang = PERSON_ROWS[0]
    _found_and_absent_records(db, p)
    assert p.get(f"/{code}/records/{zhang['citizen_id']}", params={"fields": "sex"}).json()["record"] == {"sex": "2"}
    problem(p.get(f"/{code}/records/{'1' * 19}"), 400, "invalid-request", "key")  # longer than the field


@pytest.mark.parametrize("on_loop", [True, False], ids=["on-the-loop", "in-a-worker-thread"])
def test_calls_answer_and_are_audited_alike_on_the_loop_and_in_a_worker_thread(
        db: Database, p: Plane, monkeypatch: pytest.MonkeyPatch, on_loop: bool) -> None:
    """`Database.reads_on_loop` (a database of this host, as the test servers are) or not (one
    across the network): the same answers, denials and audit records either way, and the call's
    reads run where the setting says."""
    seen: list[bool] = []
    real = calls.handle

    def spy(ctx: calls.Context, work: Any, *, on_loop: bool = False) -> Any:
        try:
            asyncio.get_running_loop()
            seen.append(True)
        except RuntimeError:
            seen.append(False)
        return real(ctx, work, on_loop=on_loop)

    monkeypatch.setattr(calls, "handle", spy)
    monkeypatch.setattr(db, "reads_on_loop", on_loop)
    monkeypatch.setattr(db, "_loop_paused_until", 0.0)
    zhang = PERSON_ROWS[0]
    _found_and_absent_records(db, p)
    before = audit_head(db)
    problem(p.get(f"/{p.code('api')}/records/{zhang['citizen_id']}", key="ook_" + "x" * 43), 401)
    one_audit(db, before, mode="api", status=401)
    r = p.post(f"/{p.code('verify')}/verify", json={"records": [{"citizen_id": zhang["citizen_id"], "name": "张三明"}]})
    assert r.status_code == 200 and r.json()["results"][0]["match"] is True, r.text
    assert rows_of(p.get(f"/{p.code('query')}/records", params={"citizen_id": zhang["citizen_id"]}))
    assert seen and set(seen) == {on_loop}


def test_a_schema_change_in_progress_never_holds_the_event_loop(db: Database, p: Plane,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A staff change that alters a resource's table holds its lock until it commits — and its
    commit may itself wait for the event loop. A record lookup meanwhile must not hold the loop:
    on PostgreSQL the read on the loop gives up after LOOP_LOCK_TIMEOUT_MS and the call waits in
    a worker thread (the next calls too, for a while); on SQLite the read does not wait (WAL)
    but its audit record waits for the write lock, off the loop too. Either way other requests
    are answered meanwhile and the lookup answers once the change is over."""
    from sqlalchemy import text

    from onceonly.app import create_app
    from onceonly.store.tables import table_for

    monkeypatch.setattr(db, "reads_on_loop", True)  # as with the test servers, whichever host they are on
    monkeypatch.setattr(db, "_loop_paused_until", 0.0)
    zhang = PERSON_ROWS[0]
    with db.session() as s:
        table = table_for(s.get(Resource, p.services["api"].resource_id)).name  # type: ignore[arg-type]
    app = create_app(db.settings, db)
    url = f"{BASE}/{p.code('api')}/records/{zhang['citizen_id']}"
    auth = {"Authorization": f"Bearer {p.w.key}"}
    before = audit_head(db)

    async def scenario() -> tuple[int, bool, int, list[int]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://onceonly.test") as client:
            locker = db.engine.connect()
            tx = locker.begin()
            watchdog = lock_watchdog(db, locker)
            try:
                locker.execute(text(f"ALTER TABLE {table} ADD COLUMN probe_loop TEXT"))  # the lock, held
                lookup = asyncio.create_task(client.get(url, headers=auth))
                await asyncio.sleep(0.5)  # the read on the loop has given up by now (PostgreSQL)
                waiting = not lookup.done()
                health = [(await client.get("/healthz")).status_code for _ in range(3)]  # the loop is free
            finally:
                watchdog.cancel()
                tx.rollback()  # the change is over
                locker.close()
            answer = await asyncio.wait_for(lookup, 30)
            return answer.status_code, waiting, (await client.get(url, headers=auth)).status_code, health

    status, waited, next_status, health = asyncio.run(scenario())
    paused = not db.loop_reads_now()
    assert status == 200 and next_status == 200 and health == [200, 200, 200]
    assert waited  # PostgreSQL: for the lock, in a worker thread; SQLite: its audit record, for the write lock
    assert paused is (not db.is_sqlite)
    one = audit_since(db, before)
    assert [(r.mode, r.status) for r in one] == [("api", 200), ("api", 200)]  # each call recorded once


def test_deleted_record_is_absent_everywhere(db: Database, p: Plane) -> None:
    with db.session(write=True) as s:
        res = fresh(s, p.w.person)
        store.upsert_rows(s, res, [{"citizen_id": "110105200001010013", "name": "赵七", "region": "341802",
                                    "household": 7}])
        store.delete_keys(s, res, [("110105200001010013",)])
    problem(p.get(f"/{p.code('api')}/records/110105200001010013"), 404, "record-not-found")
    assert not [r for r in rows_of(p.get(f"/{p.code('query')}/records", params={"household": "7"}))]
    r = p.post(f"/{p.code('verify')}/verify", json={"records": [{"citizen_id": "110105200001010013"}]})
    assert r.json()["results"][0]["exists"] is False


def test_composite_keys_and_every_type_alike_in_every_mode(p: Plane, typed: dict[str, Service]) -> None:
    query = rows_of(p.get(f"/{p.code('typed-query')}/records", params={"sort": "-score"}))
    by_key = {(r["id"], r["n"]): r for r in TYPED_WIRE}
    assert sorted(query, key=lambda r: (r["id"], r["n"])) == TYPED_WIRE
    assert [r["score"] for r in query] == [1.5, -2.0, None]  # descending, NULLs last
    for filt, expected in [({"flag": "true"}, [("a,1", 1)]), ({"born": "ge:1995-01-01"}, [("b", 1)]),
                           ({"ts": "lt:2026-01-02T12:00:00+08:00"}, [("a,1", 1)]), ({"score": "le:-1"}, [("a,1", 2)]),
                           ({"name": "say \"hi\"\nthere"}, [("a,1", 1)])]:
        got = rows_of(p.get(f"/{p.code('typed-query')}/records", params=filt))
        assert [(r["id"], r["n"]) for r in got] == expected, filt
    api = p.code("typed-api")
    for key, path_key in [(("a,1", 1), '["a,1","1"]'), (("a,1", 2), '["a,1", 2]'), (("b", 1), '["b","1"]')]:
        r = p.get(f"/{api}/records/{path_key}")
        assert r.status_code == 200, r.text
        assert r.json()["record"] == by_key[key]
    problem(p.get(f"/{api}/records/a,1"), 400, "invalid-request", "key")
    problem(p.get(f'/{api}/records/["b","x"]'), 400, "invalid-request", "key")
    problem(p.get(f'/{api}/records/["b","9"]'), 404, "record-not-found")
    bulk = p.code("typed-bulk")
    jsonl = p.get(f"/{bulk}/export", params={"format": "jsonl"})
    assert sorted((json.loads(line) for line in jsonl.text.splitlines()), key=lambda r: (r["id"], r["n"])) == TYPED_WIRE
    text = p.get(f"/{bulk}/export", params={"format": "csv"}).text
    parsed = list(csv.DictReader(io.StringIO(text, newline="")))
    assert sorted(parsed, key=lambda r: (r["id"], r["n"])) == [{k: _cell(v) for k, v in row.items()}
                                                                for row in TYPED_WIRE]
    table = pq.read_table(io.BytesIO(p.get(f"/{bulk}/export", params={"format": "parquet"}).content))
    assert str(table.schema.field("ts").type) == "timestamp[us, tz=UTC]"
    assert sorted(table.to_pylist(), key=lambda r: (r["id"], r["n"])) == [dict(r) for r in TYPED_ROWS]
    feed = p.get(f"/{bulk}/changes").json()
    assert [c["key"] for c in feed["changes"]] == ['["a,1", "1"]', '["a,1", "2"]', '["b", "1"]']
    assert p.get(f"/{api}/records/{feed['changes'][0]['key']}").json()["record"] == TYPED_WIRE[0]


def _cell(value: Any) -> str:
    """A wire value as a CSV cell: empty for null, true/false, numbers as Python writes them."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- changes and export ------------------------------------------------------------------------

def _person(db: Database, p: Plane) -> Resource:
    with db.session() as s:
        res = fresh(s, p.w.person)
        s.expunge(res)
        return res


def test_change_feed_in_order_with_deletions(db: Database, p: Plane) -> None:
    code = p.code("bulk")
    start = p.get(f"/{code}/changes", params={"limit": 1000}).json()
    head = start["last_seq"]
    assert start["has_more"] is False and start["next_since"] == head
    with db.session(write=True) as s:
        res = fresh(s, p.w.person)
        store.upsert_rows(s, res, [{"citizen_id": "110105201001010012", "name": "新人", "region": "341802",
                                    "household": 50}])
        store.upsert_rows(s, res, [{"citizen_id": "110105201001010012", "name": "新人", "region": "341802",
                                    "household": 51}])
        store.delete_keys(s, res, [("110105199202020011",)])
    page = p.get(f"/{code}/changes", params={"since": head, "limit": 2}).json()
    assert [(c["seq"], c["op"]) for c in page["changes"]] == [(head + 1, "I"), (head + 2, "U")]
    assert page["changes"][0]["record"]["household"] == 51  # the row as it is now
    assert page["changes"][0]["key"] == "110105********0012"  # masked like the field
    assert page["has_more"] is True and page["next_since"] == head + 2
    rest = p.get(f"/{code}/changes", params={"since": page["next_since"]}).json()
    assert [(c["op"], c["record"]) for c in rest["changes"]] == [("D", None)]
    assert rest["has_more"] is False
    problem(p.get(f"/{code}/changes", params={"since": rest["last_seq"] + 1}), 400, "invalid-request", "since")
    problem(p.get(f"/{code}/changes", params={"since": "-1"}), 400, "invalid-request", "since")
    problem(p.get(f"/{code}/changes", params={"since": "1e3"}), 400, "invalid-request", "since")
    problem(p.get(f"/{code}/changes", params={"cursor": "1"}), 400, "invalid-request", "cursor")


def test_export_formats_resume_and_incremental(db: Database, p: Plane) -> None:
    code = p.code("bulk")
    full = p.get(f"/{code}/export")
    assert full.headers["content-type"].startswith("text/csv")
    resume = int(full.headers["X-OnceOnly-Resume-Seq"])
    live = list(csv.DictReader(io.StringIO(full.text, newline="")))
    assert int(full.headers["X-OnceOnly-Records"]) == len(live)
    assert list(live[0]) == ["citizen_id", "name", "region", "household"]
    assert all(r["citizen_id"].count("*") == 8 for r in live)
    with_bom = p.get(f"/{code}/export", params={"format": "csv", "bom": "1"})
    assert with_bom.content.startswith(b"\xef\xbb\xbf") and not full.content.startswith(b"\xef\xbb\xbf")
    assert list(csv.DictReader(io.StringIO(with_bom.content.decode("utf-8-sig"), newline=""))) == live
    jsonl = [json.loads(line) for line in p.get(f"/{code}/export", params={"format": "jsonl"}).text.splitlines()]
    parquet = pq.read_table(io.BytesIO(p.get(f"/{code}/export", params={"format": "parquet"}).content)).to_pylist()
    assert jsonl == parquet
    assert [{k: str(v) for k, v in r.items()} for r in jsonl] == live
    nothing = p.get(f"/{code}/export", params={"since": resume})
    assert nothing.text.splitlines() == ["_seq,_op,citizen_id,name,region,household"]
    with db.session(write=True) as s:
        res = fresh(s, p.w.person)
        store.upsert_rows(s, res, [{"citizen_id": "110105201202020015", "name": "新", "region": "341803",
                                    "household": 60}])
        store.upsert_rows(s, res, [{"citizen_id": PERSON_ROWS[2]["citizen_id"], "household": 33}])
        store.delete_keys(s, res, [(PERSON_ROWS[0]["citizen_id"],)])
    inc = p.get(f"/{code}/export", params={"since": resume, "format": "jsonl"})
    changed = [json.loads(line) for line in inc.text.splitlines()]
    assert [(r["_seq"], r["_op"]) for r in changed] == [(resume + 1, "I"), (resume + 2, "U"), (resume + 3, "D")]
    assert changed[1]["household"] == 33
    assert changed[2] == {"_seq": resume + 3, "_op": "D", "citizen_id": "110105********002X", "name": None,
                          "region": None, "household": None}
    assert int(inc.headers["X-OnceOnly-Resume-Seq"]) == resume + 3
    assert int(inc.headers["X-OnceOnly-Records"]) == 3
    table = pq.read_table(io.BytesIO(p.get(f"/{code}/export", params={"since": resume, "format": "parquet"}).content))
    assert table.column_names[:2] == ["_seq", "_op"] and table.num_rows == 3
    problem(p.get(f"/{code}/export", params={"format": "xml"}), 400, "invalid-request", "format")
    problem(p.get(f"/{code}/export", params={"format": "jsonl", "bom": "1"}), 400, "invalid-request", "bom")
    problem(p.get(f"/{code}/export", params={"since": "x"}), 400, "invalid-request", "since")
    problem(p.get(f"/{code}/export", params={"since": str(resume + 4)}), 400, "invalid-request", "since")
    problem(p.get(f"/{code}/export", params={"fields": "phone"}), 403, "field-not-granted", "phone")
    problem(p.get(f"/{code}/export", params={"limit": "5"}), 400, "invalid-request", "limit")


def _deliveries(db: Database, before: int) -> list[Any]:
    """The delivery records after `before`, once there is one (they are queued, not awaited)."""
    deadline = time.monotonic() + 10
    while not (found := [r for r in audit_since(db, before) if r.kind == "delivery"]):
        assert time.monotonic() < deadline, "no delivery record"
        time.sleep(0.02)
    return found


def test_an_export_is_audited_twice_the_call_then_what_was_delivered(db: Database, p: Plane) -> None:
    """The call's record commits before the first byte (rows counted, bytes unknown: 0); when
    the body has gone out a `delivery` record names that call with the rows and bytes sent."""
    code = p.code("bulk")
    before = audit_head(db)
    full = p.get(f"/{code}/export", params={"format": "jsonl"}, headers={"X-OnceOnly-Purpose": "case-88"})
    rows = int(full.headers["X-OnceOnly-Records"])
    call = one_audit(db, before, mode="bulk", status=200, records=rows, bytes=0, purpose="case-88")
    [delivery] = _deliveries(db, before)
    assert delivery.seq > call.seq
    assert (delivery.service, delivery.mode, delivery.system, delivery.org, delivery.purpose) == (
        code, "bulk", call.system, call.org, "case-88")
    assert (delivery.status, delivery.records, delivery.bytes) == (200, rows, len(full.content))
    assert delivery.detail == {"call": call.seq, "complete": True, "format": "jsonl"}
    assert delivery.latency_ms is not None and delivery.latency_ms >= (call.latency_ms or 0)
    assert delivery.request_digest == call.request_digest


def test_an_abandoned_export_is_delivered_in_part(db: Database, p: Plane) -> None:
    """A client that goes away mid-stream: the delivery record says 499 and counts only what
    went out before (here the header line) — written when the response ends, not whenever the
    garbage collector gets to the abandoned body."""
    code = p.code("bulk")
    before = audit_head(db)
    key = p.key_of(None)
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": f"{BASE}/{code}/export",
             "raw_path": f"{BASE}/{code}/export".encode(), "query_string": b"format=csv", "root_path": "",
             "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {key}".encode())],
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    bodies: list[bytes] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.body":
            if bodies:
                raise OSError("connection reset by peer")
            bodies.append(message["body"])  # type: ignore[arg-type]

    async def drive() -> None:
        with contextlib.suppress(Exception):  # the disconnect surfaces here; the record is what matters
            await p.http.app(scope, receive, send)  # type: ignore[arg-type]

    gc.disable()  # the record must not depend on a collection reaching the dropped body
    try:
        asyncio.run(drive())
        [delivery] = _deliveries(db, before)
    finally:
        gc.enable()
    call = one_audit(db, before, mode="bulk", status=200)
    assert (delivery.status, delivery.records, delivery.bytes) == (499, 0, len(bodies[0]))
    assert delivery.detail == {"call": call.seq, "complete": False, "format": "csv"}


def test_an_export_that_fails_mid_stream_is_delivered_as_500(db: Database, p: Plane,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The server, not the client, cut the stream short: the delivery record says 500."""
    from onceonly.exchange import export

    def broken(*args: Any, **kwargs: Any) -> Iterator[Any]:
        raise RuntimeError("the disk went away")
        yield  # a generator, like the real one

    monkeypatch.setattr(export.reading, "stream_live", broken)
    code = p.code("bulk")
    before = audit_head(db)
    with pytest.raises(RuntimeError, match="disk went away"):
        p.get(f"/{code}/export")
    [delivery] = _deliveries(db, before)
    assert (delivery.status, delivery.records) == (500, 0)
    assert delivery.detail["complete"] is False
