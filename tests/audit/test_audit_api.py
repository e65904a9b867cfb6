"""The auditor API: who may read, keyset pages and filters, streamed exports an auditor can
recompute, verification, the public key, and bad query values."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import Any

import pytest
from audit_factories import calls
from core_api import Api, assert_problem, make_api

from core_factories import CLI
from onceonly.audit import record_staff_action
from onceonly.audit.canonical import dumps
from onceonly.audit.keys import PublicKey
from onceonly.db import Database

ENDPOINTS = ["/api/v1/audit/records", "/api/v1/audit/export", "/api/v1/audit/verify", "/api/v1/audit/public-key"]
A, B, STAFF = 30, 20, 5


@pytest.fixture(scope="module")
def api(db: Database) -> Api:
    client = make_api(db)
    calls(db, A, system="sys-a", service="svc-1", purpose="案件（2026）第1号")
    calls(db, B, system="sys-b", service="svc-2", status=403, mode="verify")
    with db.session(write=True) as s:
        for i in range(STAFF):
            record_staff_action(s, actor=CLI, action="exchange.grant.create", target=f"grant:{i}")
    return client


def get(api: Api, path: str, role: str = "auditor", **params: Any) -> Any:
    return api.client.get(path, params=params, headers=api.auth(role))


@pytest.mark.parametrize("role", ["auditor", "security_admin"])
@pytest.mark.parametrize("path", ENDPOINTS)
def test_auditors_read(api: Api, role: str, path: str) -> None:
    assert get(api, path, role).status_code == 200


@pytest.mark.parametrize("role", ["steward", "reviewer", "dept_admin", "platform_admin"])
@pytest.mark.parametrize("path", ENDPOINTS)
def test_others_may_not(api: Api, role: str, path: str) -> None:
    assert_problem(get(api, path, role), 403)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_anonymous_is_401(api: Api, path: str) -> None:
    assert_problem(api.client.get(path), 401)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_nobody_writes_through_the_api(api: Api, method: str) -> None:
    for path in ("/api/v1/audit/records", "/api/v1/audit/records/1"):
        response = api.client.request(method, path, headers=api.auth("security_admin"))
        assert response.status_code in (404, 405), (method, path, response.status_code)


def test_keyset_pages_walk_every_record_once(api: Api) -> None:
    seen, after = [], 0
    while True:
        page = get(api, "/api/v1/audit/records", after=after, limit=7).json()
        seen += [r["seq"] for r in page["items"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == list(range(1, A + B + STAFF + 1))


def test_record_fields(api: Api) -> None:
    first = get(api, "/api/v1/audit/records", limit=1).json()["items"][0]
    assert first["seq"] == 1 and first["kind"] == "call" and first["system"] == "sys-a"
    assert first["purpose"] == "案件（2026）第1号" and first["status"] == 200 and first["ip"] == "10.1.2.3"
    assert first["prev_hash"] == "0" * 64 and len(first["hash"]) == 64
    staff = get(api, "/api/v1/audit/records", kind="staff", limit=1).json()["items"][0]
    assert staff["username"] == CLI.username and staff["action"] == "exchange.grant.create"
    assert staff["target"] == "grant:0" and staff["system"] is None


@pytest.mark.parametrize(("params", "count"), [
    ({"system": "sys-b"}, B), ({"service": "svc-1"}, A), ({"kind": "staff"}, STAFF), ({"kind": "call"}, A + B),
    ({"kind": "delivery"}, 0),
    ({"status": 403}, B), ({"system": "sys-a", "status": 403}, 0), ({"system": "nobody"}, 0),
    ({"since": "2000-01-01"}, A + B + STAFF), ({"until": "2000-01-01T00:00:00+08:00"}, 0),
    ({"since": "2999-01-01T00:00:00Z"}, 0),
])
def test_filters(api: Api, params: dict[str, Any], count: int) -> None:
    items = get(api, "/api/v1/audit/records", limit=1000, **params).json()["items"]
    assert len(items) == count
    for key in ("system", "service", "kind", "status"):
        if key in params:
            assert {r[key] for r in items} <= {params[key]}


@pytest.mark.parametrize(("path", "param", "value"), [
    ("records", "after", "-1"), ("records", "after", "x"), ("records", "limit", "0"), ("records", "limit", "1001"),
    ("records", "since", "yesterday"), ("records", "until", "2026-13-01"), ("records", "since", "1' OR '1'='1"),
    ("records", "system", "'; DROP TABLE audit_records;--"), ("records", "service", "<script>alert(1)</script>"),
    ("records", "system", "x" * 65), ("records", "kind", "both"), ("records", "status", "abc"),
    ("records", "status", "99"), ("export", "format", "xml"), ("export", "system", "a b"),
    ("records", "since", "0001-01-01T00:00:00+08:00"), ("export", "until", "0001-01-01T00:00:00+08:00"),
])
def test_bad_query_values_are_422_naming_the_parameter(api: Api, path: str, param: str, value: str) -> None:
    body = assert_problem(get(api, f"/api/v1/audit/{path}", **{param: value}), 422, field=param)
    assert param in body["detail"]


def test_until_before_since_is_422(api: Api) -> None:
    response = get(api, "/api/v1/audit/records", since="2026-02-01", until="2026-01-01")
    assert_problem(response, 422, field="until")


def _recomputed(record: dict[str, Any]) -> str:
    content = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.new("sm3", dumps(content).encode("utf-8")).hexdigest()


def test_jsonl_export_lets_an_auditor_recompute_every_hash(api: Api) -> None:
    response = get(api, "/api/v1/audit/export", format="jsonl")
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in response.headers["content-disposition"]
    lines = response.text.splitlines()
    assert len(lines) == A + B + STAFF
    prev = "0" * 64
    for line in lines:
        record = json.loads(line)
        assert record["prev_hash"] == prev
        assert _recomputed(record) == record["hash"]
        prev = record["hash"]


def test_csv_export_has_every_field_and_recomputes(api: Api) -> None:
    response = get(api, "/api/v1/audit/export", format="csv", system="sys-b")
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == B and {r["system"] for r in rows} == {"sys-b"}
    ints = {"seq", "status", "records", "bytes", "latency_ms"}
    for row in rows:
        record: dict[str, Any] = {k: (None if v == "" else int(v) if k in ints else v) for k, v in row.items()}
        record["detail"] = json.loads(row["detail"])
        assert _recomputed(record) == row["hash"]


def test_export_filters_and_empty_export(api: Api) -> None:
    assert get(api, "/api/v1/audit/export", format="jsonl", kind="staff").text.count("\n") == STAFF
    empty = get(api, "/api/v1/audit/export", format="csv", system="nobody").text
    assert empty.splitlines()[0].startswith("seq,time,kind,") and len(empty.splitlines()) == 1


def test_verify_report(api: Api) -> None:
    report = get(api, "/api/v1/audit/verify").json()
    assert report["ok"] is True and report["records"] == A + B + STAFF and report["problems"] == []
    assert report["head_seq"] == A + B + STAFF


def test_public_key(api: Api) -> None:
    body = get(api, "/api/v1/audit/public-key").json()
    key = PublicKey.from_pem(body["pem"])
    assert key.hex == body["public_key_hex"] and key.key_id == body["key_id"]
    assert body["signer_id"] == "1234567812345678" and body["algorithm"] == "SM2"
