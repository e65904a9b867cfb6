"""Hostile and odd input on the data plane: SQL metacharacters, NUL, right-to-left marks,
characters beyond the BMP, lone surrogates and 100,000-character values in filters, keys and
verify claims; forged, foreign and stale cursors; bad sequences. Every answer is a clean 400
naming the parameter, or a correct 200 — never a 500."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from exchange_factories import PERSON_ROWS, fresh
from test_exchange_data_kit import Plane, make_plane, problem, rows_of

from onceonly.db import Database
from onceonly.store import service as store

ODD = "\u202e张\u200f三\U0001f600"  # right-to-left override and mark, an emoji beyond the BMP
HUGE = "x" * 100_000  # in bodies; a URL carries at most 64 KiB (the client's limit, and servers')
LONG = "x" * 60_000


@pytest.fixture(scope="module")
def p(db: Database) -> Iterator[Plane]:
    plane = make_plane(db)
    roomy = {"daily_quota": 1_000_000, "rate_limit": 10_000}
    fields = ["citizen_id", "name", "region", "household", "note"]
    for mode in ("query", "api", "verify", "bulk"):
        plane.grant(mode, fields, masking={}, **roomy)
    with db.session(write=True) as s:
        store.upsert_rows(s, fresh(s, plane.w.person), [
            {"citizen_id": "110105198001010017", "name": ODD, "region": "341802", "household": 90},
            {"citizen_id": "110105198001010025", "name": "O'Brien; DROP TABLE x; --", "region": "341802",
             "household": 91}])
    yield plane
    plane.http.close()


def _records(p: Plane, params: object) -> list[dict[str, object]]:
    return rows_of(p.get(f"/{p.code('query')}/records", params=params))


def test_sql_metacharacters_are_values(p: Plane) -> None:
    assert _records(p, {"name": "' OR 1=1 --"}) == []
    assert _records(p, {"name": "in:x') OR ('1'='1"}) == []
    problem(p.get(f"/{p.code('query')}/records", params={"region": "in:341802') OR ('1'='1"}), 400,
            "invalid-request", "region")  # longer than the field's 6 characters
    assert [r["household"] for r in _records(p, {"name": "O'Brien; DROP TABLE x; --"})] == [91]
    assert [r["household"] for r in _records(p, {"name": r"in:O'Brien; DROP TABLE x; --,x\,y"})] == [91]
    assert [r["household"] for r in _records(p, {"household": "ge:90", "sort": "-household"})] == [91, 90]
    problem(p.get(f"/{p.code('query')}/records", params={"fields": "name;drop table x"}), 400, "invalid-request",
            "fields")
    problem(p.get(f"/{p.code('query')}/records", params={"region;--": "1"}), 400, "invalid-request", "region;--")
    problem(p.get(f"/{p.code('query')}/records", params={"sort": "household desc"}), 400, "invalid-request", "sort")
    problem(p.get(f"/{p.code('query')}/records", params={"household": "1 OR 1=1"}), 400, "invalid-request",
            "household")


def test_odd_unicode_in_filters(p: Plane) -> None:
    assert [r["name"] for r in _records(p, {"name": ODD})] == [ODD]
    assert _records(p, {"name": ODD[1:]}) == []  # without the RTL override: another value
    problem(p.get(f"/{p.code('query')}/records", params={"name": "a\x00b"}), 400, "invalid-request", "name")
    body = problem(p.get(f"/{p.code('query')}/records", params={"name": LONG}), 400, "invalid-request", "name")
    assert len(body["detail"]) < 300
    problem(p.get(f"/{p.code('query')}/records", params={"name": "in:" + ",".join(["x"] * 101)}), 400,
            "invalid-request", "name")
    raw = p.http.get(f"/api/v1/exchange/{p.code('query')}/records?name=%ED%A0%80%ff",
                     headers={"Authorization": f"Bearer {p.w.key}"})  # a surrogate's bytes, invalid UTF-8
    assert raw.status_code in (200, 400), raw.text
    if raw.status_code == 200:
        assert raw.json()["records"] == []
    problem(p.get(f"/{p.code('query')}/records", params={"household": "9" * 30}), 400, "invalid-request",
            "household")


def test_odd_keys(p: Plane) -> None:
    api = p.code("api")
    problem(p.get(f"/{api}/records/a%00b"), 400, "invalid-request", "key")
    problem(p.get(f"/{api}/records/{LONG}"), 400, "invalid-request", "key")
    problem(p.get(f"/{api}/records/%E2%80%AE"), 404, "record-not-found")
    assert p.get(f"/{api}/records/110105198001010017").json()["record"]["name"] == ODD
    problem(p.get("/%E2%80%AE/records"), 404, "not-found", "service")
    problem(p.get(f"/{'S' * 5000}/records"), 404, "not-found", "service")


def test_odd_verify_claims(p: Plane) -> None:
    verify = p.code("verify")
    body = ('{"records": [{"citizen_id": "\\ud800", "name": "x"}, {"citizen_id": "1101\\u0000", "name": "\\ud83d"},'
            f' {{"citizen_id": "110105198001010017", "name": "{ODD}"}},'
            f' {{"citizen_id": "110105198001010017", "name": "\\ud800"}},'
            f' {{"citizen_id": "{HUGE}", "name": "{HUGE}"}}]}}')
    r = p.post(f"/{verify}/verify", content=body.encode("utf-8", "surrogatepass"),
               headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert [(x["exists"], x["match"]) for x in r.json()["results"]] == [
        (False, False), (False, False), (True, True), (True, False), (False, False)]
    infinite = p.post(f"/{verify}/verify", content=b'{"records": [{"citizen_id": 1e999999, "household": -1e999999}]}',
                      headers={"Content-Type": "application/json"})
    assert infinite.status_code == 200 and infinite.json()["results"][0]["exists"] is False
    nested = "[" * 100_000 + "]" * 100_000
    problem(p.post(f"/{verify}/verify", content=f'{{"records": {nested}}}'.encode(),
                   headers={"Content-Type": "application/json"}), 400, "invalid-request")
    problem(p.post(f"/{verify}/verify", content=b"x" * (17 * 1024 * 1024),
                   headers={"Content-Type": "application/json"}), 413, "batch-too-large", "body")


def test_cursors_cannot_be_forged_moved_or_reused_elsewhere(p: Plane) -> None:
    query = p.code("query")
    first = p.get(f"/{query}/records", params={"limit": 1, "sort": "household"}).json()
    cursor = first["next_cursor"]
    assert PERSON_ROWS[0]["citizen_id"] not in base64.urlsafe_b64decode(cursor + "==").decode("latin-1")
    assert p.get(f"/{query}/records", params={"limit": 1, "sort": "household", "cursor": cursor}).status_code == 200
    for bad in ["abc", "!!!", "", "A" * 5000, cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB"),
                base64.urlsafe_b64encode(b"x" * 64).decode()]:
        problem(p.get(f"/{query}/records", params={"limit": 1, "sort": "household", "cursor": bad}), 400,
                "invalid-request", "cursor")
    problem(p.get(f"/{query}/records", params={"limit": 1, "sort": "-household", "cursor": cursor}), 400,
            "invalid-request", "cursor")  # another sort
    problem(p.get(f"/{query}/records", params={"limit": 1, "sort": "household", "region": "1", "cursor": cursor}),
            400, "invalid-request", "cursor")  # other filters
    other, key, _ = p.system()
    p.grant("query", ["household", "citizen_id"], other)
    problem(p.get(f"/{query}/records", key=key, params={"limit": 1, "sort": "household", "cursor": cursor}), 400,
            "invalid-request", "cursor")  # sealed for another system


def test_bad_sequences(p: Plane) -> None:
    bulk = p.code("bulk")
    for since in ["-1", "x", "1.5", "9" * 20, str(2**63), " 1", "١"]:
        problem(p.get(f"/{bulk}/changes", params={"since": since}), 400, "invalid-request", "since")
        problem(p.get(f"/{bulk}/export", params={"since": since}), 400, "invalid-request", "since")
    problem(p.get(f"/{bulk}/changes", params=[("since", "1"), ("since", "2")]), 400, "invalid-request", "since")
    problem(p.get(f"/{bulk}/changes", params={"limit": "abc"}), 400, "invalid-request", "limit")
