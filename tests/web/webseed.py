"""Test data and helpers of the web console tests (a uniquely named module, imported by the
web conftest and the browser tests).

The seed is small and fixed: one department (示例市公安局), a platform admin, the resource
户籍人口基本信息 (hukou) published under catalog 101, and one more department with a few
resources so the provider filter has something to tell apart."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from onceonly.accounts.actor import Actor
from onceonly.accounts.service import create_user
from onceonly.catalog import orgs, service
from onceonly.catalog.schemas import FieldSpec, OrgIn, ResourceSpec
from onceonly.db import Database
from onceonly.kit.identifiers import make_citizen_id, make_uscc
from onceonly.ops.setup import initialize
from onceonly.settings import Settings, load_settings
from onceonly.store import service as store

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
EXTRA_RESOURCES = 3
HUKOU_ROWS = 7


@dataclass(frozen=True)
class Seed:
    settings: Settings
    db: Database
    username: str
    password: str
    org_code: str
    org2_code: str
    resource_id: int
    resource_code: str


def seed_database(home: Path) -> Seed:
    settings = load_settings(home=home, database_url="")
    db = Database(settings)
    initialize(db)
    a = Actor.cli()
    with db.session() as s:
        code = make_uscc("1", "1", "341800", "00300412")
        code2 = make_uscc("1", "1", "341800", "00300500")
        orgs.add_org(s, a, OrgIn(code=code, name="示例市公安局", short_name="公安局", region="341800"))
        orgs.add_org(s, a, OrgIn(code=code2, name="示例市市场监督管理局", short_name="市场监管局", region="341800"))
        _, password = create_user(s, a, "admin1", "platform_admin", None)
        spec = ResourceSpec(
            name="hukou", title="户籍人口基本信息", provider=code, catalog="101", key_fields=["citizen_id"],
            share_type="conditional", share_condition="用于政务服务身份核验", summary="户籍登记的人口基本信息",
            fields=[
                FieldSpec(name="citizen_id", title="公民身份号码", check="citizen_id", length=18,
                          sensitivity="sensitive"),
                FieldSpec(name="name", title="姓名", length=50, sensitivity="personal"),
                FieldSpec(name="sex", title="性别", length=1, code_list="GB/T 2261.1", sensitivity="personal"),
            ])
        r = service.create_resource(s, a, spec)
        service.publish_resource(s, a, r)
        store.upsert_rows(s, r, [
            {"citizen_id": make_citizen_id("341802", date(1980 + i, 3, 1), i + 1, i % 2 == 0), "name": f"居民{i}",
             "sex": "1" if i % 2 == 0 else "2"}
            for i in range(HUKOU_ROWS)
        ])
        for i in range(EXTRA_RESOURCES):
            extra = ResourceSpec(
                name=f"market_entity_{i}", title=f"市场主体登记信息{i}", provider=code2, catalog="102",
                key_fields=["uscc"], share_type="unconditional", open_type="open",
                fields=[FieldSpec(name="uscc", title="统一社会信用代码", check="uscc", length=18)])
            service.publish_resource(s, a, service.create_resource(s, a, extra))
        s.flush()
        return Seed(settings, db, "admin1", password, code, code2, r.id, r.code)


def csrf_of(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "page has no CSRF field"
    return match.group(1)


def sign_in(client: TestClient, username: str, password: str, next_: str = "/") -> httpx.Response:
    page = client.get("/login")
    if page.status_code == 303:  # already signed in: any page's forms carry a valid token
        page = client.get("/orgs")
    return client.post("/login", data={"username": username, "password": password, "next": next_,
                                       "csrf_token": csrf_of(page.text)})


@dataclass(frozen=True)
class ExchangeSeed:
    """Exchange staff and data on top of `Seed` (see `seed_exchange`)."""

    passwords: dict[str, str]  # username → password
    resource_id: int  # 机动车登记信息 of the first department, not yet offered as a service
    system_code: str  # the second department's business system
    service_code: str  # a query service over hukou, published by the first department


def seed_exchange(seed: Seed) -> ExchangeSeed:
    """For the exchange pages: the first department (示例市公安局) provides — `steward1` (data
    steward) and `reviewer1` (reviewer) — and holds a conditional resource 机动车登记信息 with
    one personal field among internal ones; the second (市场监管局) consumes — `steward2` and its
    system `scjg-xt`; `auditor1` reads the audit log. A query service S0001 over hukou exists."""
    from onceonly.exchange import services as exchange_services
    from onceonly.exchange import systems as exchange_systems
    from onceonly.exchange.schemas import ServiceIn, SystemIn

    a = Actor.cli()
    passwords: dict[str, str] = {}
    with seed.db.session(write=True) as s:
        org1, org2 = orgs.get_org(s, seed.org_code), orgs.get_org(s, seed.org2_code)
        for username, role, org in (("steward1", "steward", org1), ("reviewer1", "reviewer", org1),
                                    ("steward2", "steward", org2), ("auditor1", "auditor", None)):
            _, passwords[username] = create_user(s, a, username, role, org.id if org else None)
        spec = ResourceSpec(
            name="vehicle", title="机动车登记信息", provider=seed.org_code, catalog="101", key_fields=["plate"],
            query_fields=["vehicle_type"], share_type="conditional", share_condition="依法履职需要",
            fields=[
                FieldSpec(name="plate", title="号牌号码", length=10),
                FieldSpec(name="vehicle_type", title="车辆类型", length=3),
                FieldSpec(name="owner_name", title="所有人姓名", length=50, sensitivity="personal"),
                FieldSpec(name="region", title="登记地区划", length=6, code_list="GB/T 2260"),
            ])
        vehicle = service.publish_resource(s, a, service.create_resource(s, a, spec))
        exchange_systems.create_system(s, a, SystemIn(code="scjg-xt", name="市场监管业务系统", org=seed.org2_code,
                                                      contact="李工"), "web-test-secret")
        hukou = exchange_services.publish_service(s, a, ServiceIn(
            resource=seed.resource_code, mode="query", fields=["citizen_id", "name", "sex"], name="户籍人口信息查询"))
        return ExchangeSeed(passwords, vehicle.id, "scjg-xt", hukou.code)
