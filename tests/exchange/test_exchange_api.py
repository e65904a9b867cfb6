"""The exchange management API over HTTP: systems and keys, services, applications and their
decisions, grants; problem+json naming the field; hostile input; 429 with Retry-After; OpenAPI."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import exchange_factories  # noqa: F401  (puts tests/api on sys.path for core_api)
import pytest
from core_api import Api, assert_problem, make_api
from exchange_factories import company_resource, person_resource

from core_factories import add_org, unique
from onceonly.db import Database
from onceonly.deps import DbSession
from onceonly.exchange.caller import ExchangeCaller
from onceonly.exchange.enforcement import apply_masking, authorize, record_usage

BASE = "/api/v1/exchange"


@dataclass
class Orgs:
    provider: str
    consumer: str
    stranger: str
    person: str  # resource codes
    company: str


@pytest.fixture(scope="module")
def api(db: Database) -> Iterator[Api]:
    api = make_api(db)
    app: Any = api.client.app

    @app.get("/api/v1/test-exchange/{service}/records")
    def records(service: str, system: ExchangeCaller, session: DbSession) -> list[dict[str, Any]]:
        """A minimal data endpoint on the enforcement core, as the data plane will use it."""
        permit = authorize(session, system, service, "query")
        rows = [apply_masking(permit, {"sex": "1", "region": "341802", "name": "张三明"})]
        record_usage(session, permit, len(rows))
        return rows

    yield api
    api.client.close()


@pytest.fixture(scope="module")
def orgs(api: Api) -> Orgs:
    with api.db.session(write=True) as s:
        provider, consumer, stranger = add_org(s), add_org(s), add_org(s)
        person, company = person_resource(s, provider), company_resource(s, provider)
        return Orgs(provider.code, consumer.code, stranger.code, person.code, company.code)


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def post(api: Api, path: str, body: Any, role: str = "platform_admin", org: str | None = None) -> Any:
    return api.client.post(BASE + path, json=body, headers=api.auth(role, org))


def get(api: Api, path: str, role: str = "platform_admin", org: str | None = None, **params: Any) -> Any:
    return api.client.get(BASE + path, params=params, headers=api.auth(role, org))


def new_system(api: Api, org: str, **extra: Any) -> dict[str, Any]:
    body = {"code": unique("sys").replace("_", "-"), "name": "社保业务系统", "org": org, "contact": "李工", **extra}
    return ok(post(api, "/systems", body, "dept_admin", org), 201)  # type: ignore[no-any-return]


def new_service(api: Api, orgs: Orgs, resource: str, fields: list[str], mode: str = "query") -> dict[str, Any]:
    body = {"resource": resource, "mode": mode, "fields": fields, "name": unique("服务")}
    return ok(post(api, "/services", body, "steward", orgs.provider), 201)  # type: ignore[no-any-return]


def application(system: str, service: str, fields: list[str], **extra: Any) -> dict[str, Any]:
    return {"system": system, "service": service, "fields": fields, "purpose": "社保待遇资格认证",
            "legal_basis": "《社会保险法》", "expected_volume": 100,
            "expires_on": (date.today() + timedelta(days=90)).isoformat(), **extra}


# -- systems and keys --------------------------------------------------------------------------

def test_system_lifecycle_and_scoping(api: Api, orgs: Orgs) -> None:
    created = new_system(api, orgs.consumer, signing_required=True)
    assert created["signing_secret"].startswith("oos_") and created["org"] == orgs.consumer
    code = created["code"]
    shown = ok(get(api, f"/systems/{code}", "steward", orgs.consumer))
    assert "signing_secret" not in shown and shown["signing_secret_hint"] == created["signing_secret"][-4:]
    assert code in {s["code"] for s in ok(get(api, "/systems", "reviewer", orgs.consumer))}
    assert code not in {s["code"] for s in ok(get(api, "/systems", "dept_admin", orgs.stranger))}
    assert code in {s["code"] for s in ok(get(api, "/systems", "auditor"))}
    assert_problem(get(api, f"/systems/{code}", "dept_admin", orgs.stranger), 404, "system")
    assert_problem(post(api, "/systems", {"code": "x-" + unique("s"), "name": "n", "org": orgs.consumer},
                        "steward", orgs.consumer), 403)
    assert_problem(post(api, "/systems", {"code": code, "name": "n", "org": orgs.consumer}, "dept_admin",
                        orgs.consumer), 409, "code")
    patched = api.client.patch(f"{BASE}/systems/{code}", json={"contact": "王工", "active": False},
                               headers=api.auth("dept_admin", orgs.consumer))
    assert ok(patched)["contact"] == "王工" and patched.json()["active"] is False
    secret = ok(api.client.post(f"{BASE}/systems/{code}/signing-secret", headers=api.auth("dept_admin",
                                                                                          orgs.consumer)))
    assert secret["signing_secret"] != created["signing_secret"]


@pytest.mark.parametrize(("body", "field"), [
    ({"code": "'; DROP TABLE exchange_systems; --"}, "code"),
    ({"code": "系统" * 30}, "code"),
    ({"code": "a" * 41}, "code"),
    ({"code": "verify"}, "code"),
    ({"name": "名" * 100_000}, "name"),
    ({"name": ""}, "name"),
    ({"org": "9" * 200}, "org"),
    ({"contact": "x" * 201}, "contact"),
    ({"name": "业务\x00系统"}, "name"),  # PostgreSQL cannot store NUL; refused the same on both backends
])
def test_bad_system_input(api: Api, orgs: Orgs, body: dict[str, Any], field: str) -> None:
    data = {"code": unique("s").replace("_", "-"), "name": "n", "org": orgs.consumer, **body}
    assert_problem(post(api, "/systems", data), 422, field)


def test_keys_over_http(api: Api, orgs: Orgs) -> None:
    code = new_system(api, orgs.consumer)["code"]
    created = ok(post(api, f"/systems/{code}/keys", {"days": 30}, "dept_admin", orgs.consumer), 201)
    assert created["key"].startswith("ook_") and created["status"] == "active"
    listed = ok(get(api, f"/systems/{code}/keys", "dept_admin", orgs.consumer))
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    rotated = ok(post(api, f"/systems/{code}/keys/{created['id']}/rotate", {"overlap_hours": 1}, "dept_admin",
                      orgs.consumer), 201)
    assert rotated["key"] != created["key"]
    listed = {k["id"]: k for k in ok(get(api, f"/systems/{code}/keys", "dept_admin", orgs.consumer))}
    assert listed[created["id"]]["status"] == "overlap" and listed[created["id"]]["replaced_by"] == rotated["id"]
    revoked = ok(post(api, f"/systems/{code}/keys/{created['id']}/revoke", {"reason": "泄露"}, "dept_admin",
                      orgs.consumer))
    assert revoked["status"] == "revoked"
    assert_problem(post(api, f"/systems/{code}/keys/{created['id']}/revoke", {}, "dept_admin", orgs.consumer), 409)
    other = new_system(api, orgs.consumer)["code"]
    assert_problem(post(api, f"/systems/{other}/keys/{rotated['id']}/revoke", {}, "dept_admin", orgs.consumer),
                   404, "key_id")
    assert_problem(post(api, f"/systems/{code}/keys", {}, "dept_admin", orgs.stranger), 404, "system")
    assert_problem(post(api, f"/systems/{code}/keys", {"days": 0}, "dept_admin", orgs.consumer), 422, "days")
    assert_problem(post(api, f"/systems/{code}/keys/{rotated['id']}/rotate", {"overlap_hours": 1000},
                        "dept_admin", orgs.consumer), 422, "overlap_hours")
    assert_problem(post(api, f"/systems/{code}/keys/99999999999999999999/revoke", {}), 422, "key_id")


# -- services ----------------------------------------------------------------------------------

def test_services_over_http(api: Api, orgs: Orgs) -> None:
    svc = new_service(api, orgs, orgs.person, ["citizen_id", "name", "sex"])
    assert svc["provider"] == orgs.provider and svc["status"] == "published"
    sex = next(f for f in svc["fields"] if f["name"] == "sex")
    assert sex["title"] == "性别" and sex["code_list"]["code"] == "GB/T 2261.1"
    assert sex["code_list"]["codes_url"].endswith("/codes")
    assert ok(get(api, f"/services/{svc['code']}", "reviewer", orgs.stranger))["code"] == svc["code"]
    listed = ok(get(api, "/services", "steward", orgs.consumer, provider=orgs.provider, mode="query"))
    assert svc["code"] in {s["code"] for s in listed}
    body = {"resource": orgs.person, "mode": "query", "fields": ["sex"], "name": "x"}
    assert_problem(post(api, "/services", body, "steward", orgs.consumer), 403)
    assert_problem(post(api, "/services", {**body, "fields": ["nope"]}, "steward", orgs.provider), 422, "fields")
    assert_problem(post(api, "/services", {**body, "mode": "select"}, "steward", orgs.provider), 422, "mode")
    assert_problem(post(api, "/services", {**body, "resource": "nope/000"}, "steward", orgs.provider), 404,
                   "resource")
    draft = ok(post(api, "/services", {**body, "draft": True}, "steward", orgs.provider), 201)
    assert_problem(get(api, f"/services/{draft['code']}", "steward", orgs.consumer), 404, "service")
    assert ok(post(api, f"/services/{draft['code']}/publish", {}, "steward", orgs.provider))["status"] == "published"
    assert ok(post(api, f"/services/{draft['code']}/retire", {}, "dept_admin", orgs.provider))["status"] == "retired"
    for bad in ("'or'1'='1", "服务" * 50, "a"):
        assert_problem(get(api, f"/services/{bad}"), 422, "code")


# -- applications, decisions, grants -----------------------------------------------------------

def test_application_flow_over_http(api: Api, orgs: Orgs) -> None:
    svc = new_service(api, orgs, orgs.person, ["citizen_id", "name", "sex", "region"])
    system = new_system(api, orgs.consumer)["code"]
    app = ok(post(api, "/applications", application(system, svc["code"], ["citizen_id", "name", "region"]),
                  "steward", orgs.consumer), 201)
    assert app["status"] == "pending_provider" and app["waiting_for"] == "provider"
    assert app["personal_fields"] == ["citizen_id", "name"]
    # both sides see it; a stranger does not
    assert ok(get(api, f"/applications/{app['id']}", "reviewer", orgs.provider))["id"] == app["id"]
    assert ok(get(api, f"/applications/{app['id']}", "steward", orgs.consumer))["id"] == app["id"]
    assert_problem(get(api, f"/applications/{app['id']}", "reviewer", orgs.stranger), 404, "application_id")
    queue = ok(get(api, "/applications", "reviewer", orgs.provider, view="review"))
    assert app["id"] in {a["id"] for a in queue["items"]}
    assert_problem(get(api, "/applications", "reviewer", orgs.stranger, view="operate"), 403)
    # the consumer cannot decide; the reviewer narrows and sets terms; then the operator
    path = f"/applications/{app['id']}/decision"
    assert_problem(post(api, path, {"decision": "approve"}, "dept_admin", orgs.consumer), 403)
    assert_problem(post(api, path, {"decision": "reject"}, "reviewer", orgs.provider), 422, "reason")
    decided = ok(post(api, path, {"decision": "approve", "fields": ["citizen_id", "region"], "reason": "最小必要",
                                  "masking": {"citizen_id": "citizen_id"}, "row_filter": {"region": ["341802"]},
                                  "rate_limit": 2, "daily_quota": 50}, "reviewer", orgs.provider))
    assert decided["status"] == "pending_operator" and decided["fields_approved"] == ["citizen_id", "region"]
    operate = ok(get(api, "/applications", view="operate"))
    assert app["id"] in {a["id"] for a in operate["items"]}
    final = ok(post(api, path, {"decision": "approve"}))
    assert final["status"] == "approved" and final["grant_id"]
    assert [(d["step"], d["outcome"]) for d in final["decisions"]] == [("provider", "narrow"), ("operator", "approve")]
    grant = ok(get(api, f"/grants/{final['grant_id']}", "steward", orgs.consumer))
    assert grant["fields"] == ["citizen_id", "region"] and grant["masking"] == {"citizen_id": "citizen_id"}
    assert grant["row_filter"] == {"region": ["341802"]} and grant["status"] == "active"
    assert (grant["rate_limit"], grant["daily_quota"], grant["used_today"]) == (2, 50, 0)
    for side in (("reviewer", orgs.provider), ("dept_admin", orgs.consumer), ("auditor", None)):
        listed = ok(get(api, "/grants", *side))
        assert final["grant_id"] in {g["id"] for g in listed["items"]}
    assert final["grant_id"] not in {g["id"] for g in ok(get(api, "/grants", "reviewer", orgs.stranger))["items"]}
    assert_problem(post(api, f"/grants/{final['grant_id']}/revoke", {"reason": "x"}, "dept_admin", orgs.stranger),
                   404, "grant_id")
    assert_problem(post(api, f"/grants/{final['grant_id']}/revoke", {}, "reviewer", orgs.provider), 422, "reason")
    revoked = ok(post(api, f"/grants/{final['grant_id']}/revoke", {"reason": "用途结束"}, "reviewer", orgs.provider))
    assert revoked["status"] == "revoked" and revoked["revoke_reason"] == "用途结束"


def test_withdraw_over_http(api: Api, orgs: Orgs) -> None:
    svc = new_service(api, orgs, orgs.person, ["sex"])
    system = new_system(api, orgs.consumer)["code"]
    app = ok(post(api, "/applications", application(system, svc["code"], ["sex"]), "dept_admin", orgs.consumer), 201)
    assert_problem(post(api, f"/applications/{app['id']}/withdraw", {}, "reviewer", orgs.provider), 403)
    out = ok(post(api, f"/applications/{app['id']}/withdraw", {"reason": "重复申请"}, "steward", orgs.consumer))
    assert out["status"] == "withdrawn" and out["decisions"][-1]["step"] == "applicant"
    mine = ok(get(api, "/applications", "steward", orgs.consumer, view="mine", status="withdrawn"))
    assert app["id"] in {a["id"] for a in mine["items"]}


@pytest.mark.parametrize(("extra", "field"), [
    ({"fields": []}, "fields"),
    ({"fields": ["sex; DROP TABLE x"]}, "fields.0"),
    ({"purpose": ""}, "purpose"),
    ({"purpose": "用" * 3000}, "purpose"),
    ({"legal_basis": "\x07"}, "legal_basis"),
    ({"expected_volume": 0}, "expected_volume"),
    ({"expires_on": "not a date"}, "expires_on"),
    ({"system": "𠀾" * 1000}, "system"),
    ({"service": "S'--"}, "service"),
])
def test_bad_application_input(api: Api, orgs: Orgs, extra: dict[str, Any], field: str) -> None:
    body = {**application("sys-x", "S0001", ["sex"]), **extra}
    assert_problem(post(api, "/applications", body, "steward", orgs.consumer), 422, field)


@pytest.mark.parametrize(("terms", "field"), [
    ({"row_filter": {"region": "区" * 201}}, "row_filter.region.str"),
    ({"row_filter": {f"f{i}": "1" for i in range(11)}}, "row_filter"),
    ({"row_filter": {"Region; --": "1"}}, "row_filter.Region; --.[key]"),
    ({"row_filter": {"region": [{"$ne": 1}]}}, "row_filter.region.str"),
    ({"masking": {"sex": "x" * 21}}, "masking.sex"),
    ({"rate_limit": 0}, "rate_limit"),
    ({"daily_quota": 10**12}, "daily_quota"),
    ({"decision": "maybe"}, "decision"),
])
def test_bad_decision_input(api: Api, orgs: Orgs, terms: dict[str, Any], field: str) -> None:
    body = {"decision": "approve", **terms}
    r = post(api, "/applications/1/decision", body, "reviewer", orgs.provider)
    problem = assert_problem(r, 422)
    assert problem["field"].startswith(field.split(".")[0]), problem


def test_sql_metacharacters_in_filter_values_are_just_values(api: Api, orgs: Orgs) -> None:
    svc = new_service(api, orgs, orgs.person, ["sex", "region"])
    system = new_system(api, orgs.consumer)["code"]
    app = ok(post(api, "/applications", application(system, svc["code"], ["sex"]), "steward", orgs.consumer), 201)
    r = post(api, f"/applications/{app['id']}/decision",
             {"decision": "approve", "row_filter": {"region": ["341802' OR '1'='1", "区; DROP TABLE x"]}},
             "reviewer", orgs.provider)
    assert ok(r)["status"] == "approved"
    grant = ok(get(api, f"/grants/{r.json()['grant_id']}"))
    assert grant["row_filter"] == {"region": ["341802' OR '1'='1", "区; DROP TABLE x"]}


def test_enforcement_over_http_with_retry_after(api: Api, orgs: Orgs) -> None:
    """A data call through ExchangeCaller + authorize: masked fields, then 429 with Retry-After."""
    svc = new_service(api, orgs, orgs.person, ["name", "sex", "region"])
    code = new_system(api, orgs.consumer)["code"]
    key = ok(post(api, f"/systems/{code}/keys", {}, "dept_admin", orgs.consumer), 201)["key"]
    app = ok(post(api, "/applications", application(code, svc["code"], ["name", "sex"]), "steward", orgs.consumer),
             201)
    ok(post(api, f"/applications/{app['id']}/decision", {"decision": "approve", "rate_limit": 2,
                                                         "masking": {"name": "name"}}, "reviewer", orgs.provider))
    ok(post(api, f"/applications/{app['id']}/decision", {"decision": "approve"}))
    url, auth = f"/api/v1/test-exchange/{svc['code']}/records", {"Authorization": f"Bearer {key}"}
    first = api.client.get(url, headers=auth)
    assert ok(first) == [{"name": "张*明", "sex": "1"}]
    responses = [api.client.get(url, headers=auth) for _ in range(2)]
    limited = responses[-1]
    body = assert_problem(limited, 429)
    assert body["type"] == "/problems/rate-limited" and 1 <= int(limited.headers["Retry-After"]) <= 60
    assert body["retry_after"] == int(limited.headers["Retry-After"])
    denied = api.client.get("/api/v1/test-exchange/S9999999/records", headers=auth)
    assert assert_problem(denied, 403)["type"] == "/problems/grant-missing"
    assert_problem(api.client.get(url), 401)


def test_openapi_lists_expected_errors(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    ours = {p: v for p, v in paths.items() if p.startswith(BASE)}
    assert f"{BASE}/applications/{{application_id}}/decision" in ours
    for path, ops in ours.items():
        for method, op in ops.items():
            assert {"401", "403", "422"} <= set(op["responses"]), (method, path)
    data_plane = {f"{BASE}/{{service}}/{tail}" for tail in ("verify", "records", "records/{key}", "export", "changes")}
    assert {p for p in ours if p.startswith(f"{BASE}/{{")} == data_plane  # only the data plane's /exchange/{service}/…


def test_no_fixed_exchange_path_has_the_shape_of_a_data_plane_route(api: Api) -> None:
    """The data plane's router is matched first (app.py): a fixed path such as
    /exchange/subscriptions/changes would be taken for service "subscriptions"'s change feed."""
    paths = api.client.get("/openapi.json").json()["paths"]
    shapes = [re.compile(f"^{re.escape(BASE)}/[^/]+/{tail}$") for tail in ("verify", "records", "records/.+", "export",
                                                                           "changes")]
    fixed = [p for p in paths if p.startswith(f"{BASE}/") and not p.startswith(f"{BASE}/{{service}}/")]
    assert fixed and not [p for p in fixed if any(s.match(p) for s in shapes)]
    # The lookup's direct route answers GET only, as the documented one (no HEAD, no POST).
    for method in ("HEAD", "POST", "DELETE"):
        assert api.client.request(method, f"{BASE}/S0001/records/x").status_code == 405, method
