"""The catalog over HTTP: orgs, the catalog tree, resources and their lifecycle, code lists, mappings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from core_api import Api, assert_problem, make_api

from core_factories import fields, new_uscc, unique
from onceonly.catalog import service
from onceonly.db import Database
from onceonly.store import service as store


@pytest.fixture(scope="module")
def api(db: Database) -> Iterator[Api]:
    api = make_api(db)
    yield api
    api.client.close()


def new_org(api: Api, **extra: Any) -> dict[str, Any]:
    r = api.client.post("/api/v1/orgs", headers=api.auth(), json={"code": new_uscc(), "name": unique("局"), **extra})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def resource_body(org: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": unique("res"), "title": "企业基本信息", "provider": org["code"],
            "catalog": f"3{org['number']:02d}", "share_type": "unconditional", "key_fields": ["id"],
            "query_fields": ["name"], "fields": fields(), **extra}


def create_resource(api: Api, org: dict[str, Any], headers: dict[str, str] | None = None,
                    **extra: Any) -> dict[str, Any]:
    r = api.client.post("/api/v1/resources", headers=headers or api.auth(), json=resource_body(org, **extra))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


# -- organizations -----------------------------------------------------------------------------

def test_orgs_create_list_get(api: Api) -> None:
    parent = new_org(api)
    child = new_org(api, parent=parent["code"], region="341800", short_name="分局")
    assert child["parent_code"] == parent["code"] and child["number"] == parent["number"] + 1
    listed = api.client.get("/api/v1/orgs", headers=api.auth("auditor")).json()
    assert {parent["code"], child["code"]} <= {o["code"] for o in listed}
    got = api.client.get(f"/api/v1/orgs/{child['code'].lower()}", headers=api.auth("steward"))
    assert got.status_code == 200 and got.json()["region"] == "341800"
    assert_problem(api.client.post("/api/v1/orgs", headers=api.auth(), json={"code": child["code"], "name": "x"}),
                   409, "code")
    assert_problem(api.client.post("/api/v1/orgs", headers=api.auth(),
                                   json={"code": new_uscc(), "name": "x", "region": "999999"}), 422, "region")


def test_catalog_tree(api: Api) -> None:
    org = new_org(api)
    tree = api.client.get("/api/v1/catalogs", headers=api.auth("auditor")).json()
    by_code = {c["code"]: c for c in tree}
    assert {"101", "102", "103", "104", "105", "201", "212"} <= set(by_code)
    dept = by_code[f"3{org['number']:02d}"]
    assert dept["kind"] == "department" and dept["org"] == org["code"]
    assert dept["categories"] == [{"code": "001", "name": "业务数据", "resource_count": 0}]
    create_resource(api, org)
    tree = api.client.get("/api/v1/catalogs", headers=api.auth()).json()
    dept = next(c for c in tree if c["code"] == f"3{org['number']:02d}")
    assert dept["categories"][0]["resource_count"] == 1


def test_create_catalog_and_category(api: Api) -> None:
    existing = {c["code"] for c in api.client.get("/api/v1/catalogs", headers=api.auth()).json()}
    item = next(f"{n:02d}" for n in range(50, 100) if f"2{n:02d}" not in existing)
    r = api.client.post("/api/v1/catalogs", headers=api.auth(),
                        json={"kind": "theme", "item": item, "name": "营商环境"})
    assert r.status_code == 201 and r.json()["code"] == f"2{item}"
    r = api.client.post(f"/api/v1/catalogs/2{item}/categories", headers=api.auth(),
                        json={"code": "002", "name": "准入"})
    assert r.status_code == 201 and [c["code"] for c in r.json()["categories"]] == ["001", "002"]
    assert_problem(api.client.post("/api/v1/catalogs", headers=api.auth("steward"),
                                   json={"kind": "theme", "item": "96", "name": "x"}), 403)
    assert_problem(api.client.post("/api/v1/catalogs", headers=api.auth(),
                                   json={"kind": "theme", "item": "1", "name": "x"}), 422, "item")


# -- resources ---------------------------------------------------------------------------------

def test_resource_lifecycle(api: Api) -> None:
    org = new_org(api)
    steward = api.auth("steward", org["code"])
    res = create_resource(api, org, steward)
    catalog = f"3{org['number']:02d}"
    assert res["code"] == f"{catalog}001/000001" and res["status"] == "draft" and res["version"] == 1
    name = res["name"]

    r = api.client.patch(f"/api/v1/resources/{name}", headers=steward, json={"title": "新标题", "summary": "摘要"})
    assert r.status_code == 200 and r.json()["title"] == "新标题"

    r = api.client.post(f"/api/v1/resources/{name}/publish", headers=steward)
    assert r.status_code == 200 and r.json()["status"] == "published"
    assert r.json()["table_name"] == f"r_{name}_v1" and r.json()["publish_date"]
    assert_problem(api.client.post(f"/api/v1/resources/{name}/publish", headers=steward), 409, "status")

    # rows arrive through the store (ingest); the API reports them
    with api.db.session() as s:
        store.upsert_rows(s, service.get_resource(s, name), [{"id": "1", "name": "甲"}, {"id": "2", "name": "乙"}])
    count = api.client.get(f"/api/v1/resources/{name}/count", headers=steward).json()
    assert count == {"resource": res["code"], "version": 1, "rows": 2, "last_seq": 2}
    log = api.client.get(f"/api/v1/resources/{name}/changes", headers=steward, params={"since": 1}).json()
    assert log == [{"seq": 2, "op": "I", "key": "2", "batch_id": None}]
    assert_problem(api.client.get(f"/api/v1/resources/{name}/changes", headers=steward, params={"since": -1}),
                   422, "since")

    # published: grow by a nullable field; anything else needs a new version
    grown = [*fields(), {"name": "remark", "title": "备注"}]
    r = api.client.patch(f"/api/v1/resources/{name}", headers=steward, json={"fields": grown})
    assert r.status_code == 200, r.text
    assert [f["name"] for f in r.json()["fields"]][-1] == "remark"
    r = api.client.patch(f"/api/v1/resources/{name}", headers=steward, json={"fields": fields()})
    body = assert_problem(r, 409, "fields.remark")
    assert body["type"] == "/problems/schema-change" and "new version" in body["detail"]

    r = api.client.post(f"/api/v1/resources/{name}/versions", headers=steward)
    assert r.status_code == 201
    v2 = r.json()
    assert (v2["version"], v2["code"], v2["status"]) == (2, res["code"], "draft")
    r = api.client.patch(f"/api/v1/resources/{v2['id']}", headers=steward, json={"key_fields": ["id", "n"]})
    assert r.status_code == 200 and r.json()["key_fields"] == ["id", "n"]
    assert api.client.post(f"/api/v1/resources/{v2['id']}/publish", headers=steward).status_code == 200
    versions = api.client.get(f"/api/v1/resources/{name}/versions", headers=steward).json()
    assert [(v["version"], v["status"]) for v in versions] == [(1, "retired"), (2, "published")]

    r = api.client.post(f"/api/v1/resources/{name}/retire", headers=steward)
    assert r.status_code == 200 and r.json()["status"] == "retired" and r.json()["version"] == 2


def test_resource_bad_input(api: Api) -> None:
    org = new_org(api)
    assert_problem(api.client.post("/api/v1/resources", headers=api.auth(),
                                   json=resource_body(org, key_fields=["nope"])), 422)
    assert_problem(api.client.post("/api/v1/resources", headers=api.auth(),
                                   json=resource_body(org, share_type="sometimes")), 422, "share_type")
    assert_problem(api.client.post("/api/v1/resources", headers=api.auth(),
                                   json=resource_body(org, format="x" * 41)), 422, "format")
    bad_list = resource_body(org, fields=[*fields(), {"name": "sex", "title": "性别", "code_list": "NOPE"}])
    assert_problem(api.client.post("/api/v1/resources", headers=api.auth(), json=bad_list), 422,
                   "fields[7].code_list")
    res = create_resource(api, org)
    assert_problem(api.client.patch(f"/api/v1/resources/{res['name']}", headers=api.auth(),
                                    json={"key_fields": ["missing"]}), 422)
    assert_problem(api.client.get(f"/api/v1/resources/{unique('missing')}", headers=api.auth()), 404)
    assert_problem(api.client.post("/api/v1/resources", headers=api.auth(),
                                   json=resource_body(org, provider=new_uscc())), 404, "org")


def test_steward_of_another_org_is_403(api: Api) -> None:
    org_a, org_b = new_org(api), new_org(api)
    res_b = create_resource(api, org_b)
    steward_a = api.auth("steward", org_a["code"])
    assert_problem(api.client.patch(f"/api/v1/resources/{res_b['name']}", headers=steward_a,
                                    json={"title": "别人的"}), 403)
    assert_problem(api.client.post(f"/api/v1/resources/{res_b['name']}/publish", headers=steward_a), 403)
    assert_problem(api.client.post("/api/v1/resources", headers=steward_a, json=resource_body(org_b)), 403)
    assert_problem(api.client.post("/api/v1/resources", headers=api.auth("auditor"), json=resource_body(org_a)), 403)
    # reading the catalog is open to every role
    assert api.client.get(f"/api/v1/resources/{res_b['name']}", headers=steward_a).status_code == 200


def test_search(api: Api) -> None:
    org = new_org(api)
    res = create_resource(api, org, title="不动产登记信息")
    headers = api.auth("auditor")

    def names(**params: Any) -> set[str]:
        r = api.client.get("/api/v1/resources", headers=headers, params={"limit": 200, **params})
        assert r.status_code == 200, r.text
        return {i["name"] for i in r.json()["items"]}

    assert names(q=res["name"]) == {res["name"]}
    assert names(q=res["code"]) == {res["name"]}
    assert names(q=org["name"]) == {res["name"]}
    assert names(provider=org["code"]) == {res["name"]}
    assert names(catalog=f"3{org['number']:02d}", status="draft") == {res["name"]}
    assert names(q=res["name"], status="published") == set()


@pytest.mark.parametrize("q", ["%' OR 1=1 --", "%%", "_%_", "\\", "' UNION SELECT * FROM users --",
                               "\u202e\u200b\ufeff", "𠀀𪚥😀", "\x00", "a\x00%"])
def test_hostile_query_values(api: Api, q: str) -> None:
    org = new_org(api)
    create_resource(api, org)
    r = api.client.get("/api/v1/resources", headers=api.auth(), params={"q": q})
    assert r.status_code == 200, r.text
    assert r.json()["items"] == [] and r.json()["total"] == 0


def test_very_long_query_is_a_clean_422(api: Api) -> None:
    r = api.client.get("/api/v1/resources", headers=api.auth(), params={"q": "x" * 10_000})
    assert_problem(r, 422, "q")
    r = api.client.get("/api/v1/resources", headers=api.auth(), params={"catalog": "1; DROP"})
    assert_problem(r, 422, "catalog")
    r = api.client.get("/api/v1/resources", headers=api.auth(), params={"limit": 10**9})
    assert_problem(r, 422, "limit")


# -- code lists and mappings -------------------------------------------------------------------

def test_code_lists(api: Api) -> None:
    lists = {c["code"]: c for c in api.client.get("/api/v1/code-lists", headers=api.auth("auditor")).json()}
    assert lists["GB/T 2261.1"]["standard"] and lists["GB/T 2261.1"]["source_date"]
    assert lists["GB/T 2261.1"]["size"] == 4
    codes = api.client.get("/api/v1/code-lists/GB/T 2260/codes", headers=api.auth()).json()
    assert {"code": "341800", "name": "宣城市", "current": True} in codes
    assert "110103" not in {c["code"] for c in codes}
    everything = api.client.get("/api/v1/code-lists/GB/T 2260/codes", headers=api.auth(),
                                params={"current": False}).json()
    assert "110103" in {c["code"] for c in everything}
    assert_problem(api.client.get("/api/v1/code-lists/NOPE/codes", headers=api.auth()), 404)

    org = new_org(api)
    steward = api.auth("steward", org["code"])
    code = unique("CERT")
    r = api.client.post("/api/v1/code-lists", headers=steward, json={
        "code": code, "name": "证件类型", "org": org["code"], "codes": [["A", "身份证"], ["B", "护照"]]})
    assert r.status_code == 201, r.text
    assert r.json() == {"code": code, "name": "证件类型", "source": "", "source_date": None, "standard": False,
                        "org": org["code"], "size": 2}
    listed = {c["code"]: c for c in api.client.get("/api/v1/code-lists", headers=steward).json()}
    assert listed[code]["org"] == org["code"] and listed[code]["size"] == 2
    assert_problem(api.client.post("/api/v1/code-lists", headers=steward, json={"code": code, "name": "x",
                                                                                "org": org["code"]}), 409)
    assert_problem(api.client.post("/api/v1/code-lists", headers=steward,
                                   json={"code": "bad code!", "name": "x"}), 422, "code")


def test_code_mappings(api: Api) -> None:
    org = new_org(api)
    steward = api.auth("steward", org["code"])
    r = api.client.put("/api/v1/code-mappings", headers=steward, json={
        "org": org["code"], "code_list": "GB/T 2261.1",
        "entries": [{"local_code": "M", "standard_code": "1", "local_name": "男"},
                    {"local_code": "F", "standard_code": "2"}]})
    assert r.status_code == 200, r.text
    assert [(m["local_code"], m["standard_code"]) for m in r.json()] == [("F", "2"), ("M", "1")]
    listed = api.client.get("/api/v1/code-mappings", headers=steward,
                            params={"org": org["code"], "code_list": "GB/T 2261.1"}).json()
    assert {m["local_code"] for m in listed} == {"F", "M"} and all(m["org"] == org["code"] for m in listed)
    r = api.client.put("/api/v1/code-mappings", headers=steward, json={
        "org": org["code"], "code_list": "GB/T 2261.1", "entries": [{"local_code": "X", "standard_code": "7"}]})
    assert_problem(r, 422, "entries[0].standard_code")
    other = new_org(api)
    r = api.client.put("/api/v1/code-mappings", headers=steward, json={
        "org": other["code"], "code_list": "GB/T 2261.1", "entries": [{"local_code": "M", "standard_code": "1"}]})
    assert_problem(r, 403)
