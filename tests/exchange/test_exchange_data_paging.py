"""Keyset pages stay stable across pages and while rows are being added, on SQLite and
PostgreSQL; an export of ~200,000 rows streams with memory far below its size."""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from exchange_factories import fresh
from test_exchange_data_kit import Plane, make_plane

from onceonly.db import Database
from onceonly.store import service as store

BIG = 200_000


def _person(i: int, region: str = "341802") -> dict[str, Any]:
    return {"citizen_id": f"P{i:017d}", "name": f"人{i % 97}", "phone": f"138{i:08d}", "sex": "1",
            "region": region, "household": i % 50, "note": "备注"}


@pytest.fixture(scope="module")
def p(db: Database) -> Iterator[Plane]:
    plane = make_plane(db)
    roomy = {"daily_quota": 10_000_000, "rate_limit": 100_000}
    plane.grant("query", ["citizen_id", "region", "household"], masking={}, **roomy)
    plane.grant("bulk", ["citizen_id", "name", "phone", "sex", "region", "household", "note"], masking={}, **roomy)
    with db.session(write=True) as s:
        store.upsert_rows(s, fresh(s, plane.w.person),
                          [_person(i, "341802" if i % 3 else "341803") for i in range(300)], unique=True)
    yield plane
    plane.http.close()


def _walk(p: Plane, params: dict[str, Any], between: Any = None) -> list[dict[str, Any]]:
    """Every page in order, calling `between(page_number)` after each page."""
    seen, cursor, page = [], None, 0
    while True:
        r = p.get(f"/{p.code('query')}/records", params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        seen.extend(body["records"])
        cursor, page = body["next_cursor"], page + 1
        if between is not None:
            between(page)
        if cursor is None:
            return seen


@pytest.mark.parametrize("sort", ["", "household", "-household,region", "region,-household"])
def test_pages_cover_every_row_once_in_order(p: Plane, sort: str) -> None:
    params: dict[str, Any] = {"limit": 37, "region": "in:341802,341803", **({"sort": sort} if sort else {})}
    rows = _walk(p, params)
    everything = p.get(f"/{p.code('query')}/records", params={**params, "limit": 1000}).json()["records"]
    assert rows == everything and len(rows) >= 300
    assert len({r["citizen_id"] for r in rows}) == len(rows)


def test_pages_stay_stable_while_rows_are_added(db: Database, p: Plane) -> None:
    params = {"limit": 25, "sort": "household", "region": "341803"}
    before = {r["citizen_id"] for r in _walk(p, params)}
    stop = threading.Event()
    added: list[str] = []

    def writer() -> None:
        i = 10_000
        while not stop.is_set() and i < 10_400:
            with db.session(write=True) as s:
                store.upsert_rows(s, fresh(s, p.w.person), [_person(i, "341803"), _person(i + 1, "341803")])
            added.extend([f"P{i:017d}", f"P{i + 1:017d}"])
            i += 2

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        rows = _walk(p, params)
    finally:
        stop.set()
        thread.join()
    ids = [r["citizen_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a row came twice"
    assert before <= set(ids), "a row that was there all along was skipped"
    assert set(ids) - before <= set(added)
    order = [(r["household"], r["citizen_id"]) for r in rows]
    assert order == sorted(order)
    assert added, "the writer added nothing while paging"


def _asgi_get(p: Plane, path: str) -> tuple[int, dict[str, str], int]:
    """GET through the app itself, counting the streamed body without keeping it (the test
    client would buffer the whole body, which is what this measures)."""
    app = p.http.app
    path, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(b"authorization", f"Bearer {p.w.key}".encode()), (b"host", b"testserver")],
             "client": ("127.0.0.1", 1234), "server": ("testserver", 80), "state": {}}
    result: dict[str, Any] = {"size": 0, "headers": {}}
    requested = False
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            result["status"] = message["status"]
            result["headers"] = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            result["size"] += len(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    return result["status"], result["headers"], result["size"]


def test_large_export_streams_with_bounded_memory(db: Database, p: Plane) -> None:
    with db.session(write=True) as s:
        res = fresh(s, p.w.person)
        store.upsert_rows(s, res, (_person(100_000 + i) for i in range(BIG)), unique=True,
                          chunk_size=BIG)  # one stage: fast on a table without fresh statistics
    assert _asgi_get(p, f"/api/v1/exchange/{p.code('bulk')}/changes?limit=1")[0] == 200  # warm the app up
    path = f"/api/v1/exchange/{p.code('bulk')}/export?format=csv"
    tracemalloc.start()
    try:
        status, headers, size = _asgi_get(p, path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 200
    rows = int(headers["x-onceonly-records"])
    assert rows >= BIG and size > rows * 50
    assert peak < size / 4, f"peak {peak:,} bytes for a {size:,}-byte export"
