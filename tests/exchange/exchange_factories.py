"""Builders for the exchange tests: a provider with a person resource (personal and sensitive
fields) and a company resource (public and internal only), consumer systems, services,
applications taken through their steps.

The `db` fixture is module-scoped: every builder makes fresh orgs, names and codes."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from core_factories import CLI, add_org, add_user, published, unique
from onceonly.accounts.actor import Actor
from onceonly.catalog.models import Organization, Resource
from onceonly.db import Base, Database
from onceonly.exchange import applications, credentials, services, systems
from onceonly.exchange.models import Application, Service, System
from onceonly.exchange.schemas import ApplicationIn, DecisionIn, ServiceIn, SystemIn
from onceonly.ops.setup import initialize
from onceonly.store import service as store

# The API client of the core tests lives in tests/api, on sys.path only when pytest collected a
# module there; the exchange API tests reuse it.
_API_DIR = str(Path(__file__).resolve().parents[1] / "api")
if _API_DIR not in sys.path:
    sys.path.append(_API_DIR)

MASTER = "test-platform-secret-0123456789"

PERSON_FIELDS: list[dict[str, Any]] = [
    {"name": "citizen_id", "title": "公民身份号码", "type": "string", "length": 18, "sensitivity": "sensitive",
     "check": "citizen_id"},
    {"name": "name", "title": "姓名", "type": "string", "length": 50, "sensitivity": "personal"},
    {"name": "phone", "title": "手机号码", "type": "string", "length": 11, "sensitivity": "personal",
     "check": "mobile"},
    {"name": "sex", "title": "性别", "type": "string", "length": 1, "sensitivity": "internal",
     "code_list": "GB/T 2261.1"},
    {"name": "region", "title": "户籍地区划", "type": "string", "length": 6, "sensitivity": "internal"},
    {"name": "household", "title": "户号", "type": "integer", "sensitivity": "internal"},
    {"name": "note", "title": "备注", "type": "string", "length": 200, "sensitivity": "public"},
]
COMPANY_FIELDS: list[dict[str, Any]] = [
    {"name": "uscc", "title": "统一社会信用代码", "type": "string", "length": 18, "sensitivity": "public"},
    {"name": "company", "title": "企业名称", "type": "string", "length": 100, "sensitivity": "public"},
    {"name": "status", "title": "登记状态", "type": "string", "length": 10, "sensitivity": "internal"},
    {"name": "capital", "title": "注册资本", "type": "number", "sensitivity": "internal"},
]
PERSON_ROWS = [
    {"citizen_id": "11010519900101002X", "name": "张三明", "phone": "13812345678", "sex": "2", "region": "341802",
     "household": 1, "note": "甲"},
    {"citizen_id": "110105199202020011", "name": "李四", "phone": "13900001111", "sex": "1", "region": "341803",
     "household": 2, "note": "乙"},
    {"citizen_id": "110105199303030035", "name": "王五", "phone": "13700002222", "sex": "1", "region": "341802",
     "household": 3, "note": "丙"},
]


T = TypeVar("T", bound=Base)


def fresh(s: Session, obj: T) -> T:
    """The row of a detached object, as stored now, in session `s`."""
    row = s.get(type(obj), obj.id)  # type: ignore[attr-defined]
    assert row is not None
    return row


def ready(db: Database) -> None:
    initialize(db)


def person_resource(s: Session, org: Organization, share_type: str = "conditional") -> Resource:
    extra = {"share_condition": "依法履职需要"} if share_type == "conditional" else {}
    res = published(s, org, name=unique("person"), title="人口基本信息", share_type=share_type,
                    key_fields=["citizen_id"], query_fields=["region", "household", "name"], fields=PERSON_FIELDS,
                    **extra)
    store.upsert_rows(s, res, [dict(r) for r in PERSON_ROWS])
    return res


def company_resource(s: Session, org: Organization, share_type: str = "unconditional") -> Resource:
    extra = {"share_condition": "依法履职需要"} if share_type == "conditional" else {}
    return published(s, org, name=unique("company"), title="企业登记信息", share_type=share_type,
                     key_fields=["uscc"], query_fields=["company"], fields=COMPANY_FIELDS, **extra)


def add_service(s: Session, res: Resource, mode: str = "query", fields: list[str] | None = None,
                actor: Actor = CLI) -> Service:
    names = fields or [f.name for f in res.fields]
    return services.publish_service(s, actor, ServiceIn(resource=str(res.id), mode=mode, fields=names,  # type: ignore[arg-type]
                                                        name=f"{res.title}{mode}"))


def add_system(s: Session, org: Organization, signing: bool = False, actor: Actor = CLI) -> tuple[System, str | None]:
    return systems.create_system(s, actor, SystemIn(code=unique("sys").replace("_", "-"), name="业务系统",
                                                    org=org.code, contact="王工 0563-1234567",
                                                    signing_required=signing), MASTER)


def application_in(system: System, service: Service, fields: list[str], **extra: Any) -> ApplicationIn:
    data: dict[str, Any] = {"system": system.code, "service": service.code, "fields": fields,
                            "purpose": "办理社会保险登记", "legal_basis": "《社会保险法》第五十八条",
                            "expected_volume": 1000, "expires_on": date.today() + timedelta(days=200)}
    data.update(extra)
    return ApplicationIn.model_validate(data)


def decision(choice: str = "approve", **extra: Any) -> DecisionIn:
    return DecisionIn.model_validate({"decision": choice, **extra})


@dataclass
class World:
    """A provider with both resources and query services over them, a consumer with a system
    and a key, and staff on both sides."""

    db: Database
    provider: Organization
    consumer: Organization
    person: Resource
    company: Resource
    person_service: Service
    company_service: Service
    system: System
    key: str
    provider_reviewer: Actor
    provider_admin: Actor
    provider_steward: Actor
    consumer_steward: Actor
    consumer_admin: Actor
    operator: Actor


def world(db: Database, *, person_share: str = "conditional") -> World:
    with db.session(write=True) as s:
        provider, consumer = add_org(s, unique("公安局")), add_org(s, unique("人社局"))
        person = person_resource(s, provider, person_share)
        company = company_resource(s, provider)
        person_service = add_service(s, person)
        company_service = add_service(s, company)
        system, _ = add_system(s, consumer)
        _, key = credentials.create_key(s, CLI, system)
        w = World(
            db=db, provider=provider, consumer=consumer, person=person, company=company,
            person_service=person_service, company_service=company_service, system=system, key=key,
            provider_reviewer=add_user(s, "reviewer", provider)[1],
            provider_admin=add_user(s, "dept_admin", provider)[1],
            provider_steward=add_user(s, "steward", provider)[1], consumer_steward=add_user(s, "steward", consumer)[1],
            consumer_admin=add_user(s, "dept_admin", consumer)[1], operator=add_user(s, "platform_admin")[1],
        )
    return w


def approved(w: World, fields: list[str], *, service: Service | None = None, **terms: Any) -> Application:
    """An application taken through every step it needs, with `terms` set at the provider step."""
    service = service or w.person_service
    with w.db.session(write=True) as s:
        system, svc = fresh(s, w.system), fresh(s, service)
        app = applications.apply(s, w.consumer_steward, system, svc, application_in(system, svc, fields))
        if app.status == "pending_provider":
            app = applications.decide(s, w.provider_reviewer, app, decision(**terms))
        if app.status == "pending_operator":
            app = applications.decide(s, w.operator, app, decision())
        assert app.status == "approved", app.status
        s.flush()
        s.expunge(app)
    return app
