"""HTTP plumbing: bearer auth, problem+json errors, OpenAPI, health, metrics, the request's transaction."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from core_api import Api, assert_problem, make_api
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from core_factories import new_uscc, unique
from onceonly.accounts.models import ApiToken, StaffAction
from onceonly.app import create_app
from onceonly.catalog import repository as repo
from onceonly.db import Database, utcnow
from onceonly.kit.crypto import sm3_hex
from onceonly.settings import load_settings


@pytest.fixture(scope="module")
def api(db: Database) -> Iterator[Api]:
    api = make_api(db)
    yield api
    api.client.close()


# -- authentication ----------------------------------------------------------------------------

def test_no_credentials_is_401_problem(api: Api) -> None:
    body = assert_problem(api.client.get("/api/v1/orgs"), 401)
    assert body["type"] == "/problems/unauthenticated"
    assert "Bearer" in body["detail"]


@pytest.mark.parametrize("header", ["Bearer ", "Bearer oo_not-a-token", "Basic dXNlcjpwYXNz", "bearer"])
def test_bad_credentials_are_401(api: Api, header: str) -> None:
    assert_problem(api.client.get("/api/v1/orgs", headers={"Authorization": header}), 401)


def test_bearer_token_authenticates(api: Api) -> None:
    r = api.client.get("/api/v1/me", headers=api.auth("auditor"))
    assert r.status_code == 200
    me = r.json()
    assert me["role"] == "auditor" and me["org"] is None and me["active"] and not me["locked"]


def test_expired_and_revoked_tokens_are_401(api: Api) -> None:
    token = api.token("auditor")
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/api/v1/me", headers=headers).status_code == 200
    with api.db.session() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.token_hash == sm3_hex(token)))
        assert row is not None
        row.expires_at = utcnow() - timedelta(minutes=1)
    assert_problem(api.client.get("/api/v1/me", headers=headers), 401)

    token = api.token("auditor")
    headers = {"Authorization": f"Bearer {token}"}
    created = api.client.post("/api/v1/me/tokens", headers=headers, json={"name": "second"}).json()
    assert created["token"].startswith("oo_") and created["hint"] == created["token"][-4:]
    listed = api.client.get("/api/v1/me/tokens", headers=headers).json()
    assert [t["name"] for t in listed] == ["tests", "second"]
    assert all("token" not in t for t in listed)  # shown once, never listed
    second = {"Authorization": f"Bearer {created['token']}"}
    assert api.client.delete(f"/api/v1/me/tokens/{created['id']}", headers=headers).status_code == 204
    assert_problem(api.client.get("/api/v1/me", headers=second), 401)
    assert api.client.get("/api/v1/me", headers=headers).status_code == 200
    assert_problem(api.client.delete("/api/v1/me/tokens/999999", headers=headers), 404)


def test_wrong_role_is_403_problem(api: Api) -> None:
    r = api.client.post("/api/v1/orgs", headers=api.auth("auditor"), json={"code": new_uscc(), "name": "x"})
    body = assert_problem(r, 403)
    assert body["type"] == "/problems/forbidden"
    assert_problem(api.client.get("/api/v1/audit/staff-actions", headers=api.auth("steward")), 403)
    assert_problem(api.client.get("/api/v1/users", headers=api.auth("auditor")), 403)


def test_users_api_and_audit_trail(api: Api) -> None:
    org = api.client.post("/api/v1/orgs", headers=api.auth(), json={"code": new_uscc(), "name": unique("局")})
    assert org.status_code == 201
    name = unique("steward")
    created = api.client.post("/api/v1/users", headers=api.auth("security_admin"),
                              json={"username": name, "role": "steward", "org": org.json()["code"]})
    assert created.status_code == 201, created.text
    assert len(created.json()["password"]) >= 12 and created.json()["org"] == org.json()["code"]
    assert_problem(api.client.post("/api/v1/users", headers=api.auth("security_admin"),
                                   json={"username": name + "b", "role": "steward"}), 422, "org")
    assert_problem(api.client.post("/api/v1/users", headers=api.auth("security_admin"),
                                   json={"username": name, "role": "auditor"}), 409)
    assert_problem(api.client.post("/api/v1/users", headers=api.auth("security_admin"),
                                   json={"username": name + "c", "role": "god"}), 422, "role")
    disabled = api.client.post(f"/api/v1/users/{name}/disable", headers=api.auth("security_admin"))
    assert disabled.status_code == 200 and not disabled.json()["active"]
    trail = api.client.get("/api/v1/audit/staff-actions", headers=api.auth("auditor"),
                           params={"action": "user."}).json()
    targets = [(i["action"], i["target"]) for i in trail["items"]]
    assert ("user.create", f"user:{name}") in targets and ("user.disable", f"user:{name}") in targets
    assert trail["items"][0]["ip"] == "testclient"


def test_api_never_deletes_staff_actions(api: Api) -> None:
    r = api.client.delete("/api/v1/audit/staff-actions", headers=api.auth("auditor"))
    assert_problem(r, 405)


# -- problem+json for bad input ----------------------------------------------------------------

def test_invalid_uscc_names_code(api: Api) -> None:
    r = api.client.post("/api/v1/orgs", headers=api.auth(), json={"code": "113418000030041N16", "name": "x"})
    body = assert_problem(r, 422, "code")
    assert "GB 32100" in body["detail"]


def test_schema_error_names_the_field_path(api: Api) -> None:
    r = api.client.post("/api/v1/orgs", headers=api.auth(), json={"code": new_uscc()})
    assert_problem(r, 422, "name")
    r = api.client.post("/api/v1/resources", headers=api.auth(), json={
        "name": "ok_name", "title": "t", "provider": new_uscc(), "catalog": "101", "key_fields": ["id"],
        "fields": [{"name": "id", "title": "编号"}, {"name": "Bad-Name", "title": "坏"}]})
    body = assert_problem(r, 422, "fields.1.name")
    assert body["errors"][0]["field"] == "fields.1.name"


def test_malformed_json_is_422_problem(api: Api) -> None:
    r = api.client.post("/api/v1/orgs", headers={**api.auth(), "content-type": "application/json"},
                        content=b"{not json")
    assert_problem(r, 422)


def test_unknown_route_is_404_problem(api: Api) -> None:
    assert_problem(api.client.get("/api/v1/nothing-here", headers=api.auth()), 404)
    assert_problem(api.client.get(f"/api/v1/orgs/{new_uscc()}", headers=api.auth()), 404, "org")


def test_database_refusing_a_value_is_422_not_500(api: Api) -> None:
    """PostgreSQL cannot store NUL; that is bad input, not a server fault."""
    r = api.client.post("/api/v1/orgs", headers=api.auth(), json={"code": new_uscc(), "name": "坏\u0000名"})
    if api.db.is_sqlite:
        assert r.status_code == 201
    else:
        assert_problem(r, 422)


# -- the request owns the transaction ----------------------------------------------------------

def test_commit_happens_before_the_response(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the commit fails the client must not have been told it worked."""
    headers = api.auth()
    code = new_uscc()

    def failing_commit(self: Session) -> None:
        raise RuntimeError("disk full")

    client = TestClient(api.client.app, raise_server_exceptions=False)
    monkeypatch.setattr(Session, "commit", failing_commit)
    r = client.post("/api/v1/orgs", headers=headers, json={"code": code, "name": unique("局")})
    monkeypatch.undo()
    assert r.status_code == 500
    with api.db.session() as s:
        assert repo.org_by_code(s, code) is None


def test_failed_request_rolls_back_everything(api: Api) -> None:
    code = new_uscc()
    r = api.client.post("/api/v1/orgs", headers=api.auth(), json={"code": code, "name": "x", "parent": new_uscc()})
    assert_problem(r, 422, "parent")
    with api.db.session() as s:
        assert repo.org_by_code(s, code) is None
        assert s.scalar(select(StaffAction).where(StaffAction.target == f"org:{code}")) is None


# -- docs, health, metrics ---------------------------------------------------------------------

def test_openapi_lists_the_paths(api: Api) -> None:
    r = api.client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.") and doc["info"]["title"].startswith("OnceOnly")
    for path in ("/api/v1/orgs", "/api/v1/orgs/{code}", "/api/v1/catalogs", "/api/v1/resources",
                 "/api/v1/resources/{ref}", "/api/v1/resources/{ref}/publish", "/api/v1/resources/{ref}/retire",
                 "/api/v1/resources/{ref}/versions", "/api/v1/resources/{ref}/count",
                 "/api/v1/resources/{ref}/changes", "/api/v1/code-lists", "/api/v1/code-mappings",
                 "/api/v1/users", "/api/v1/me/tokens", "/healthz", "/metrics"):
        assert path in doc["paths"], path
    post_orgs = doc["paths"]["/api/v1/orgs"]["post"]
    assert {"401", "403", "422"} <= set(post_orgs["responses"])
    # every operation has a unique id and every $ref resolves
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    schemas = doc["components"]["schemas"]
    refs = [part.split('"')[0] for part in r.text.split('"$ref":"')[1:]]
    for ref in refs:
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas


def test_docs_page(api: Api) -> None:
    r = api.client.get("/docs")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "/openapi.json" in r.text


def test_healthz_ok(api: Api) -> None:
    r = api.client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert r.json()["database"] == ("sqlite" if api.db.is_sqlite else "postgresql")


def test_healthz_503_when_database_unreachable(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = load_settings(home=tmp_path, database_url=f"postgresql://u:secret@127.0.0.1:{port}/gone")
    app = create_app(settings)
    with TestClient(app) as client:
        r = client.get("/healthz")
        assert r.status_code == 503
        assert r.json()["status"] == "error" and "secret" not in r.text
    app.state.db.dispose()


def test_metrics_prometheus_text(api: Api) -> None:
    api.client.get("/healthz")
    api.client.get("/api/v1/orgs")  # a 401
    api.client.get(f"/api/v1/orgs/{new_uscc()}", headers=api.auth())  # a 404 on a templated path
    r = api.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "# TYPE onceonly_http_requests_total counter" in text
    assert 'onceonly_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'onceonly_http_requests_total{method="GET",route="/api/v1/orgs",status="401"}' in text
    assert 'onceonly_http_requests_total{method="GET",route="/api/v1/orgs/{code}",status="404"}' in text
    assert "onceonly_http_request_seconds_bucket" in text


def test_concurrent_writes_never_fail_with_500(api: Api) -> None:
    """Several POSTs at once: on SQLite they wait for the write lock; racing for the same
    department number on PostgreSQL, a loser gets a 409 to retry — never an internal error."""
    headers = api.auth()
    statuses: list[int] = []

    def post(i: int) -> None:
        with TestClient(api.client.app, raise_server_exceptions=False) as client:
            r = client.post("/api/v1/orgs", headers=headers, json={"code": new_uscc(), "name": unique("并发局")})
            statuses.append(r.status_code)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(statuses) == 4 and set(statuses) <= {201, 409} and 201 in statuses
    if api.db.is_sqlite:
        assert statuses == [201] * 4


def test_unique_violation_is_409_problem(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    org = api.client.post("/api/v1/orgs", headers=api.auth(), json={"code": new_uscc(), "name": unique("局")}).json()
    monkeypatch.setattr(repo, "org_by_code", lambda session, code: None)  # as if a concurrent request won
    r = api.client.post("/api/v1/orgs", headers=api.auth(), json={"code": org["code"], "name": "again"})
    assert_problem(r, 409)
