"""Behaviour fixed after review: codes in paths, drafts found by name for edits, who reads the
change log, cookie-authenticated API writes need the page's CSRF token, own password change."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from core_api import Api, assert_problem, make_api

from core_factories import fields, new_uscc, unique
from onceonly.accounts import repository as accounts_repo
from onceonly.accounts import service as accounts
from onceonly.db import Database
from onceonly.deps import SESSION_COOKIE
from onceonly.kit.passwords import generate_password


@pytest.fixture(scope="module")
def api(db: Database) -> Iterator[Api]:
    api = make_api(db)
    yield api
    api.client.close()


def new_org(api: Api) -> dict[str, Any]:
    r = api.client.post("/api/v1/orgs", headers=api.auth(), json={"code": new_uscc(), "name": unique("局")})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def new_resource(api: Api, org: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    body = {"name": unique("res"), "title": "资源", "provider": org["code"], "catalog": f"3{org['number']:02d}",
            "share_type": "unconditional", "key_fields": ["id"], "fields": fields()}
    r = api.client.post("/api/v1/resources", headers=headers, json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_resource_codes_work_in_paths(api: Api) -> None:
    org = new_org(api)
    steward = api.auth("steward", org["code"])
    res = new_resource(api, org, steward)
    code = res["code"]
    assert "/" in code
    assert api.client.get(f"/api/v1/resources/{code}", headers=steward).json()["id"] == res["id"]
    r = api.client.post(f"/api/v1/resources/{code}/publish", headers=steward)
    assert r.status_code == 200 and r.json()["status"] == "published"
    assert api.client.get(f"/api/v1/resources/{code}/count", headers=steward).json()["rows"] == 0
    assert [v["version"] for v in api.client.get(f"/api/v1/resources/{code}/versions", headers=steward).json()] == [1]


def test_edits_and_publish_by_name_act_on_the_open_draft(api: Api) -> None:
    org = new_org(api)
    steward = api.auth("steward", org["code"])
    name = new_resource(api, org, steward)["name"]
    assert api.client.post(f"/api/v1/resources/{name}/publish", headers=steward).status_code == 200
    assert api.client.post(f"/api/v1/resources/{name}/versions", headers=steward).status_code == 201
    r = api.client.patch(f"/api/v1/resources/{name}", headers=steward, json={"key_fields": ["id", "n"]})
    assert r.status_code == 200 and r.json()["version"] == 2, r.text
    r = api.client.post(f"/api/v1/resources/{name}/publish", headers=steward)
    assert r.status_code == 200 and r.json()["version"] == 2
    # reads still prefer the published version
    assert api.client.get(f"/api/v1/resources/{name}", headers=steward).json()["version"] == 2


def test_new_version_cannot_move_the_resource(api: Api) -> None:
    org, other = new_org(api), new_org(api)
    steward = api.auth("steward", org["code"])
    res = new_resource(api, org, steward)
    assert api.client.post(f"/api/v1/resources/{res['id']}/publish", headers=steward).status_code == 200
    body = {"name": res["name"], "title": "x", "provider": other["code"], "catalog": f"3{org['number']:02d}",
            "share_type": "unconditional", "key_fields": ["id"], "fields": fields()}
    assert_problem(api.client.post(f"/api/v1/resources/{res['id']}/versions", headers=steward, json=body),
                   422, "provider")


def test_change_log_is_for_the_providers_staff_and_each_read_is_recorded(api: Api) -> None:
    org, other = new_org(api), new_org(api)
    steward = api.auth("steward", org["code"])
    res = new_resource(api, org, steward)
    api.client.post(f"/api/v1/resources/{res['id']}/publish", headers=steward)
    url = f"/api/v1/resources/{res['id']}/changes"
    assert_problem(api.client.get(url, headers=api.auth()), 403)  # platform admin: not the data's owner
    assert_problem(api.client.get(url, headers=api.auth("steward", other["code"])), 403)
    assert_problem(api.client.get(url, headers=api.auth("auditor")), 403)
    assert api.client.get(url, headers=steward).status_code == 200
    with api.db.session() as s:
        rows, _ = accounts_repo.actions(s, action="resource.changes.read")
        assert any(r.target == f"resource:{res['code']}" for r in rows)


def _browser_session(api: Api) -> tuple[str, str]:
    """A signed-in web session cookie for a fresh platform admin."""
    password = generate_password()
    with api.db.session(write=True) as s:
        user, _ = accounts.create_user(s, accounts_actor(), unique("web"), "platform_admin", None,
                                       password=password)
        token = accounts.start_web_session(s, user, "127.0.0.1")
    return user.username, token


def accounts_actor() -> Any:
    from core_factories import CLI

    return CLI


def test_cookie_authenticated_api_writes_need_the_csrf_token(api: Api) -> None:
    _, cookie = _browser_session(api)
    api.client.cookies.set(SESSION_COOKIE, cookie)
    try:
        assert api.client.get("/api/v1/me").status_code == 200  # reads are fine
        r = api.client.post("/api/v1/orgs", json={"code": new_uscc(), "name": unique("局")})
        assert_problem(r, 403)
        with api.db.session() as s:
            assert accounts_repo.actions(s, action="org.create", username="nobody")[1] == 0
    finally:
        api.client.cookies.clear()


def test_change_own_password(api: Api) -> None:
    password = generate_password()
    with api.db.session(write=True) as s:
        user, _ = accounts.create_user(s, accounts_actor(), unique("me"), "auditor", None, password=password)
        _, token = accounts.create_api_token(s, accounts_actor(), user, "t")
    headers = {"Authorization": f"Bearer {token}"}
    assert_problem(api.client.post("/api/v1/me/password", headers=headers,
                                   json={"current_password": "wrong", "new_password": generate_password()}),
                   422, "current_password")
    assert_problem(api.client.post("/api/v1/me/password", headers=headers,
                                   json={"current_password": password, "new_password": "short"}),
                   422, "new_password")
    new = generate_password()
    r = api.client.post("/api/v1/me/password", headers=headers, json={"current_password": password,
                                                                     "new_password": new})
    assert r.status_code == 204, r.text
    with api.db.session() as s:
        assert accounts.authenticate(s, user.username, new, None, 5, 15).id == user.id


def test_reset_by_security_admin_ends_sessions_and_revokes_tokens(api: Api) -> None:
    with api.db.session(write=True) as s:
        user, _ = accounts.create_user(s, accounts_actor(), unique("u"), "auditor", None)
        _, token = accounts.create_api_token(s, accounts_actor(), user, "t")
        cookie = accounts.start_web_session(s, user, None)
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/api/v1/me", headers=headers).status_code == 200
    with api.db.session(write=True) as s:
        accounts.set_password(s, accounts_actor(), accounts.get_user(s, user.username), generate_password())
    assert_problem(api.client.get("/api/v1/me", headers=headers), 401)
    with api.db.session() as s:
        assert accounts.resolve_web_session(s, cookie, 30) is None


def test_healthz_does_not_leak_connection_details(tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    from onceonly.app import create_app
    from onceonly.settings import load_settings

    settings = load_settings(home=tmp_path, database_url="postgresql+psycopg://secretuser:pw@127.0.0.1:1/x")
    with TestClient(create_app(settings)) as client:
        r = client.get("/healthz")
    assert r.status_code == 503
    assert "secretuser" not in r.text and "127.0.0.1" not in r.text
