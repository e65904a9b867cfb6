"""The access matrix through the data plane: several systems × services × fields × row filters —
who sees which fields of which rows, masked how, and why the others are refused; quotas and
rate limits (429 with Retry-After); refused keys and signatures; exactly one audit record per
call, denials included, and no data in a denial."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from exchange_factories import PERSON_ROWS, fresh
from test_exchange_data_kit import Plane, audit_head, audit_since, leaks, make_plane, one_audit, problem, rows_of

from core_factories import CLI
from onceonly.db import Database, utcnow
from onceonly.exchange import calls, credentials, signing
from onceonly.exchange.models import Credential, Grant, System

ZHANG, LI, WANG = PERSON_ROWS
VALUES = [v for row in PERSON_ROWS for k, v in row.items() if k != "household"]


@dataclass
class Matrix:
    p: Plane
    a: System  # query: id, name (masked), region where region=341802; bulk: id, household where 341803
    b: System  # query: region, household (no filter); verify: id, name
    c: System  # no grant at all
    revoked: System
    expired: System


def _set_grant(db: Database, grant_id: int, **values: Any) -> None:
    with db.session(write=True) as s:
        grant = s.get(Grant, grant_id)
        assert grant is not None
        for name, value in values.items():
            setattr(grant, name, value)


@pytest.fixture(scope="module")
def m(db: Database) -> Iterator[Matrix]:
    p = make_plane(db)
    a, b, c, revoked, expired = (p.system()[0] for _ in range(5))
    roomy = {"daily_quota": 100_000, "rate_limit": 10_000}
    p.grant("query", ["citizen_id", "name", "region"], a, masking={"name": "name"}, row_filter={"region": "341802"},
            **roomy)
    p.grant("bulk", ["citizen_id", "household"], a, row_filter={"region": ["341803"]}, **roomy)
    p.grant("query", ["region", "household"], b, **roomy)
    p.grant("verify", ["citizen_id", "name"], b, **roomy)
    gone = p.grant("query", ["region"], revoked, **roomy)
    old = p.grant("query", ["region"], expired, **roomy)
    assert gone.grant_id and old.grant_id
    _set_grant(db, gone.grant_id, revoked_at=utcnow(), revoked_by="tester", revoke_reason="项目结束")
    _set_grant(db, old.grant_id, expires_at=utcnow() - timedelta(seconds=1))
    yield Matrix(p, a, b, c, revoked, expired)
    p.http.close()


def _export(p: Plane, system: System, **params: Any) -> list[dict[str, str]]:
    r = p.get(f"/{p.code('bulk')}/export", system=system, params=params)
    assert r.status_code == 200, r.text
    return list(csv.DictReader(io.StringIO(r.text, newline="")))


def test_who_sees_which_fields_of_which_rows(db: Database, m: Matrix) -> None:
    p = m.p
    query, bulk = p.code("query"), p.code("bulk")
    a_rows = rows_of(p.get(f"/{query}/records", system=m.a))
    assert a_rows == [{"citizen_id": ZHANG["citizen_id"], "name": "张*明", "region": "341802"},
                      {"citizen_id": WANG["citizen_id"], "name": "王*", "region": "341802"}]
    assert rows_of(p.get(f"/{query}/records", system=m.a, params={"region": "341803"})) == []  # outside the filter
    assert rows_of(p.get(f"/{query}/records", system=m.a, params={"citizen_id": LI["citizen_id"]})) == []
    b_rows = rows_of(p.get(f"/{query}/records", system=m.b, params={"sort": "household"}))
    assert b_rows == [{"region": r["region"], "household": r["household"]} for r in PERSON_ROWS]
    assert _export(p, m.a) == [{"citizen_id": "110105********0011", "household": "2"}]  # default ID masking
    feed = p.get(f"/{bulk}/changes", system=m.a).json()
    assert [(c["op"], c["record"]) for c in feed["changes"]] == [
        ("I", {"citizen_id": "110105********0011", "household": 2})]
    verify = p.post(f"/{p.code('verify')}/verify", system=m.b, json={"records": [
        {"citizen_id": LI["citizen_id"], "name": "李四"}]})
    assert verify.json()["results"][0]["match"] is True


def test_a_record_lookup_keeps_to_a_row_filter_of_several_values(db: Database, m: Matrix) -> None:
    """A record by key only within the grant's row filter — here a list of regions — and masked;
    a row outside it is the same 404 as no row at all."""
    p = m.p
    d = p.system()[0]
    p.grant("api", ["citizen_id", "name", "region"], d, masking={"name": "name"},
            row_filter={"region": ["341802", "341899"]}, daily_quota=100, rate_limit=100)
    api = p.code("api")
    for row, masked in ((ZHANG, "张*明"), (WANG, "王*")):
        r = p.get(f"/{api}/records/{row['citizen_id']}", system=d)
        assert r.status_code == 200, r.text
        assert r.json()["record"] == {"citizen_id": row["citizen_id"], "name": masked, "region": "341802"}
    outside, absent = (p.get(f"/{api}/records/{key}", system=d) for key in (LI["citizen_id"], "110105199909090000"))
    problem(outside, 404, "record-not-found", "key")
    assert outside.json() == absent.json() and not leaks(outside.text, VALUES)


def test_denials_say_why_and_carry_nothing(db: Database, m: Matrix) -> None:
    p = m.p
    query, bulk, verify, api = (p.code(x) for x in ("query", "bulk", "verify", "api"))
    body = {"records": [{"citizen_id": ZHANG["citizen_id"], "name": "张三明"}]}
    cases: list[tuple[System, str, str, dict[str, Any], int, str, str | None]] = [
        (m.a, "GET", f"/{query}/records", {"params": {"fields": "household"}}, 403, "field-not-granted", "household"),
        (m.a, "GET", f"/{query}/records", {"params": {"household": "1"}}, 403, "field-not-granted", "household"),
        (m.a, "GET", f"/{bulk}/export", {"params": {"fields": "name"}}, 403, "field-not-granted", "name"),
        (m.a, "POST", f"/{verify}/verify", {"json": body}, 403, "grant-missing", None),
        (m.a, "GET", f"/{api}/records/{ZHANG['citizen_id']}", {}, 403, "grant-missing", None),
        (m.a, "GET", f"/{query}/export", {}, 403, "mode-not-offered", "mode"),
        (m.a, "GET", f"/{bulk}/records", {}, 403, "mode-not-offered", "mode"),
        (m.b, "GET", f"/{bulk}/changes", {}, 403, "grant-missing", None),
        (m.b, "POST", f"/{verify}/verify", {"json": {"records": [{"citizen_id": "x", "phone": "1"}]}}, 403,
         "field-not-granted", "phone"),
        (m.b, "GET", f"/{query}/records", {"params": {"fields": "citizen_id"}}, 403, "field-not-granted",
         "citizen_id"),
        (m.c, "GET", f"/{query}/records", {}, 403, "grant-missing", None),
        (m.c, "GET", f"/{bulk}/export", {}, 403, "grant-missing", None),
        (m.revoked, "GET", f"/{query}/records", {}, 403, "grant-revoked", None),
        (m.expired, "GET", f"/{query}/records", {}, 403, "grant-expired", None),
    ]
    for system, method, path, kw, status, kind, field in cases:
        before = audit_head(db)
        r = p.call(method, path, system=system, **kw)
        problem(r, status, kind, field)
        assert not leaks(r.text, VALUES), (path, r.text)
        record = one_audit(db, before, system=system.code, status=status, records=0)
        assert record.detail["problem"] == kind and record.bytes == 0


def test_every_call_has_exactly_one_audit_record(db: Database, m: Matrix) -> None:
    p = m.p
    query = p.code("query")
    calls: list[tuple[dict[str, Any], int]] = [
        ({"system": m.a}, 200), ({"system": m.a, "params": {"household": "x"}}, 403),
        ({"system": m.b, "params": {"household": "x"}}, 400), ({"system": m.c}, 403),
        ({"key": "ook_" + "x" * 43}, 401), ({"system": m.b, "params": {"limit": "0"}}, 400),
    ]
    before = audit_head(db)
    for kw, status in calls:
        r = p.get(f"/{query}/records", headers={"X-OnceOnly-Purpose": "核查%E6%A1%88".encode()}, **kw)
        assert r.status_code == status, r.text
    records = [r for r in audit_since(db, before) if r.kind == "call"]
    assert [r.status for r in records] == [s for _, s in calls]
    assert all(r.purpose == "核查案" and r.mode == "query" and r.service == query for r in records)
    assert records[0].records == 2 and records[0].bytes > 0 and records[0].request_digest
    assert records[4].system is None and records[4].detail["reason"] == "unknown API key"


def test_no_call_waits_for_the_audit_writer_on_the_event_loop(db: Database, m: Matrix,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Answered or denied, a call waits for its group commit on a future (or, in a worker
    thread, on an event): the blocking `append_call` never runs on the event loop's thread,
    where it would stall every other request until the commit."""
    blocking = calls.append_call
    loop_threads: list[str] = []

    def guarded(*args: Any, **kwargs: Any) -> int:
        try:
            asyncio.get_running_loop()
            loop_threads.append(threading.current_thread().name)
        except RuntimeError:
            pass  # a worker thread: blocking is fine there
        return blocking(*args, **kwargs)

    monkeypatch.setattr(calls, "append_call", guarded)
    query = m.p.code("query")
    before = audit_head(db)
    for kw, status in (({"system": m.a}, 200), ({"system": m.c}, 403), ({"key": "ook_" + "y" * 43}, 401),
                       ({"system": m.b, "params": {"limit": "0"}}, 400)):
        assert m.p.get(f"/{query}/records", **kw).status_code == status
    assert [r.status for r in audit_since(db, before) if r.kind == "call"] == [200, 403, 401, 400]
    assert loop_threads == []


def _fresh_limits(p: Plane, mode: str, fields: list[str], **terms: Any) -> System:
    system, _, _ = p.system()
    p.grant(mode, fields, system, **terms)
    return system


def _retry_after(r: httpx.Response, kind: str) -> int:
    body = problem(r, 429, kind)
    assert int(r.headers["Retry-After"]) == body["retry_after"] >= 1
    return int(body["retry_after"])


def test_daily_quota_caps_answers_then_refuses(db: Database, m: Matrix) -> None:
    p = m.p
    system = _fresh_limits(p, "query", ["region", "household"], daily_quota=2, rate_limit=1000)
    first = p.get(f"/{p.code('query')}/records", system=system)
    assert first.json()["count"] == 2 and first.headers["X-OnceOnly-Quota-Remaining"] == "0"  # capped at what is left
    before = audit_head(db)
    assert _retry_after(p.get(f"/{p.code('query')}/records", system=system), "quota-exceeded") > 0
    one_audit(db, before, status=429, records=0)
    bulk = _fresh_limits(p, "bulk", ["region"], daily_quota=2, rate_limit=1000)
    refused = p.get(f"/{p.code('bulk')}/export", system=bulk)  # 3 rows would pass a quota of 2
    _retry_after(refused, "quota-exceeded")
    assert "3 records" in refused.json()["detail"]
    verify = _fresh_limits(p, "verify", ["citizen_id"], daily_quota=2, rate_limit=1000)
    three = {"records": [{"citizen_id": r["citizen_id"]} for r in PERSON_ROWS]}
    _retry_after(p.post(f"/{p.code('verify')}/verify", system=verify, json=three), "quota-exceeded")
    two = {"records": three["records"][:2]}
    assert p.post(f"/{p.code('verify')}/verify", system=verify, json=two).status_code == 200


def test_rate_limit_per_minute(db: Database, m: Matrix) -> None:
    p = m.p
    system = _fresh_limits(p, "bulk", ["region"], daily_quota=1000, rate_limit=2)
    if time.time() % 60 > 50:  # three calls must fall in one minute
        time.sleep(61 - time.time() % 60)
    paths = [f"/{p.code('bulk')}/changes", f"/{p.code('bulk')}/export"]
    assert all(p.get(path, system=system).status_code == 200 for path in paths)
    before = audit_head(db)
    _retry_after(p.get(paths[0], system=system), "rate-limited")
    one_audit(db, before, status=429)


def test_refused_keys(db: Database, m: Matrix) -> None:
    p = m.p
    system, key, _ = p.system()
    p.grant("query", ["region"], system)
    query = f"/{p.code('query')}/records"
    assert p.get(query, key=key).status_code == 200
    with db.session(write=True) as s:
        cred = s.query(Credential).filter(Credential.system_id == system.id).one()
        new, new_key = credentials.rotate_key(s, CLI, cred, overlap=timedelta(0))
    problem(p.get(query, key=key), 401, "exchange-unauthenticated")  # rotated out: no overlap left
    assert p.get(query, key=new_key).status_code == 200
    with db.session(write=True) as s:
        new = s.get(Credential, new.id)
        assert new is not None
        new.expires_at = utcnow() - timedelta(seconds=1)
    before = audit_head(db)
    body = problem(p.get(query, key=new_key), 401, "exchange-unauthenticated")
    assert "expired" in body["detail"]
    one_audit(db, before, status=401, system=None)
    with db.session(write=True) as s:
        _, third = credentials.create_key(s, CLI, fresh(s, system))
        cred = s.query(Credential).filter(Credential.system_id == system.id).order_by(Credential.id.desc()).first()
        assert cred is not None
        credentials.revoke_key(s, CLI, cred, "泄露")
    assert "revoked" in problem(p.get(query, key=third), 401)["detail"]
    problem(p.get(query, key=None, headers={"Authorization": "Basic x"}), 401, "exchange-unauthenticated")


def test_signed_calls_replays_and_skew(db: Database, m: Matrix) -> None:
    p = m.p
    system, key, secret = p.system(signing_required=True)
    assert secret
    p.grant("verify", ["citizen_id", "name"], system)
    p.grant("query", ["region"], system)
    target = f"/api/v1/exchange/{p.code('query')}/records?region=341802"
    ok = p.signed("GET", target, secret, key, nonce="nonce-0123456789abcd")
    assert ok.status_code == 200 and len(ok.json()["records"]) == 2
    before = audit_head(db)
    problem(p.signed("GET", target, secret, key, nonce="nonce-0123456789abcd"), 401, "exchange-unauthenticated")
    one_audit(db, before, status=401)
    skewed = p.signed("GET", target, secret, key, now=utcnow() - timedelta(seconds=400))
    assert "off the server's clock" in problem(skewed, 401)["detail"]
    problem(p.get(f"/{p.code('query')}/records", system=system, key=key), 401)  # unsigned
    body = json.dumps({"records": [{"citizen_id": ZHANG["citizen_id"], "name": "张三明"}]}).encode()
    verify = f"/api/v1/exchange/{p.code('verify')}/verify"
    signed = p.signed("POST", verify, secret, key, body)
    assert signed.status_code == 200 and signed.json()["results"][0]["match"] is True
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
               **signing.signed_headers(secret, "POST", verify, body)}
    problem(p.http.post(verify, content=body + b" ", headers=headers), 401, "exchange-unauthenticated")  # changed
