"""The demo city's exchange: services its departments offer, the business systems that call
them, their applications (approved by the providers' reviewers and, for personal fields, the
platform operator — one left pending, one rejected, so every queue has something in it) and API
keys. Everything goes through the exchange's own service functions, so it is audited."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.demo.world import Org
from onceonly.exchange import applications, credentials, grants, services, systems
from onceonly.exchange.schemas import ApplicationIn, DecisionIn, ServiceIn, SystemIn

CREDENTIALS_FILE = "demo-credentials.json"


@dataclass(frozen=True)
class ServiceDef:
    code: str
    dept: str
    resource: str
    mode: str
    fields: tuple[str, ...]
    name: str
    description: str = ""


@dataclass(frozen=True)
class Want:
    service: str
    purpose: str
    legal_basis: str
    fields: tuple[str, ...] | None = None  # None: all of the service's fields
    volume: int = 2000
    terms: dict[str, Any] = field(default_factory=dict)  # masking, row filter, rate, quota set by the reviewer
    narrow_to: tuple[str, ...] | None = None  # the reviewer approves only these
    outcome: str = "approve"  # approve | reject | pending


@dataclass(frozen=True)
class SystemDef:
    code: str
    dept: str
    name: str
    contact: str
    wants: tuple[Want, ...]


SERVICES: tuple[ServiceDef, ...] = (
    ServiceDef("gaj-rk-verify", "gaj", "population", "verify", ("citizen_id", "name", "sex", "birth_date"),
               "户籍人口身份核验", "比对公民身份号码与姓名、性别、出生日期是否一致，只返回是否一致"),
    ServiceDef("gaj-rk-api", "gaj", "population", "api",
               ("citizen_id", "name", "sex", "ethnic", "birth_date", "native_region", "household_number"),
               "户籍人口基本信息查询", "按公民身份号码查询一人的户籍基本信息"),
    ServiceDef("gaj-rk-query", "gaj", "population", "query", ("citizen_id", "name", "sex", "household_number"),
               "户籍人口检索", "按姓名或户号检索户籍人口"),
    ServiceDef("mzj-hy-verify", "mzj", "marriage_registration", "verify",
               ("certificate_no", "husband_citizen_id", "wife_citizen_id", "registration_type"),
               "婚姻登记信息核验", "核验结婚证、离婚证信息是否属实"),
    ServiceDef("mzj-sw-bulk", "mzj", "death_registration", "bulk",
               ("citizen_id", "name", "death_date", "household_region"),
               "死亡（火化）登记信息批量共享", "供养老金停发、医保停保等业务按日增量同步"),
    ServiceDef("scjgj-qy-query", "scjgj", "enterprise_registration", "query",
               ("uscc", "name", "entity_type", "legal_rep_name", "registered_capital", "established_date"),
               "市场主体登记信息检索", "按名称或统一社会信用代码检索市场主体"),
    ServiceDef("scjgj-yyzz-api", "scjgj", "business_license", "api",
               ("uscc", "name", "org_type", "legal_rep_name", "registered_capital", "established_date", "address"),
               "营业执照信息查询", "办事时免交营业执照复印件"),
    ServiceDef("swj-nsxy-bulk", "swj", "tax_credit_rating", "bulk",
               ("uscc", "evaluation_year", "taxpayer_name", "rating"),
               "纳税信用等级批量共享", "供信用信息共享平台归集"),
    ServiceDef("rsj-sb-api", "rsj", "social_insurance", "api", ("citizen_id", "name", "insured_type", "employer_name"),
               "社会保险参保信息查询", "核实申请人参保状态"),
    ServiceDef("fgw-sxmd-query", "fgw", "dishonest_list", "query",
               ("list_no", "name", "uscc", "list_type", "listed_date"), "严重失信主体名单检索",
               "招投标、评优评先前的信用核查"),
)

SYSTEMS: tuple[SystemDef, ...] = (
    SystemDef("zjj-zfbz", "zjj", "住房保障管理系统", "住建局信息中心 0563-2021001", (
        Want("gaj-rk-verify", "公租房申请人身份核验", "《公共租赁住房管理办法》第七条", volume=3000,
             terms={"rate_limit": 600, "daily_quota": 200_000}),
        Want("mzj-hy-verify", "公租房申请家庭婚姻状况核验", "《公共租赁住房管理办法》第七条",
             terms={"rate_limit": 300, "daily_quota": 50_000}),
        Want("rsj-sb-api", "公租房申请人就业状况核实", "《公共租赁住房管理办法》第七条", outcome="pending"),
    )),
    SystemDef("gjj-yw", "gjj", "住房公积金业务系统", "公积金中心信息科 0563-2022002", (
        Want("gaj-rk-api", "公积金开户、提取身份信息核实", "《住房公积金管理条例》", volume=5000,
             narrow_to=("citizen_id", "name", "sex", "birth_date"),
             terms={"masking": {"name": "name"}, "rate_limit": 600, "daily_quota": 100_000}),
        Want("scjgj-yyzz-api", "单位缴存登记核实营业执照", "《住房公积金管理条例》第十四条"),
    )),
    SystemDef("rsj-shebao", "rsj", "社会保险业务系统", "人社局信息中心 0563-2023003", (
        Want("mzj-sw-bulk", "养老金停发、待遇资格认证", "《社会保险法》", volume=500,
             terms={"rate_limit": 60, "daily_quota": 1_000_000}),
        Want("gaj-rk-query", "参保人员身份检索", "《社会保险法》", outcome="reject"),
    )),
    SystemDef("zwfw-zwzx", "dsj", "政务服务网（市政务服务中心）", "数据资源局 0563-2024004", (
        Want("scjgj-qy-query", "“一网通办”企业开办、变更免交材料", "《优化营商环境条例》第三十五条", volume=20000,
             terms={"rate_limit": 1200, "daily_quota": 500_000}),
        Want("scjgj-yyzz-api", "办事免交营业执照复印件", "《优化营商环境条例》第三十五条", volume=20000),
        Want("gaj-rk-api", "办事人身份信息免填", "《国务院关于加快推进全国一体化在线政务服务平台建设的指导意见》",
             terms={"masking": {"citizen_id": "citizen_id", "name": "name"}, "rate_limit": 600,
                    "daily_quota": 200_000}),
    )),
    SystemDef("fgw-xypt", "fgw", "信用信息共享平台", "发展改革委信用科 0563-2025005", (
        Want("swj-nsxy-bulk", "纳税信用等级归集入信用信息库", "《社会信用体系建设规划纲要》", volume=20000),
        Want("fgw-sxmd-query", "联合惩戒名单核查", "《关于建立完善守信联合激励和失信联合惩戒制度的指导意见》"),
    )),
)


@dataclass
class DemoCredential:
    system: str
    name: str
    api_key: str
    services: list[str]


def build_exchange(session: Session, builder: Actor, orgs: dict[str, Org], master: str) -> list[DemoCredential]:
    """Publish the services, register the systems with a key each, and take their applications
    through review. Returns each system's key and the services it may call."""
    for s in SERVICES:
        res_code = _resource_code(session, s.resource)
        services.publish_service(session, builder, ServiceIn(
            code=s.code, resource=res_code, mode=s.mode, fields=list(s.fields), name=s.name,
            description=s.description))
    out: list[DemoCredential] = []
    expires = grants.city_today() + timedelta(days=365)
    for d in SYSTEMS:
        system, _ = systems.create_system(session, builder, SystemIn(
            code=d.code, name=d.name, org=orgs[d.dept].code, contact=d.contact), master)
        _, key = credentials.create_key(session, builder, system, days=365)
        granted: list[str] = []
        for want in d.wants:
            service = services.get_service(session, want.service)
            app = applications.apply(session, builder, system, service, ApplicationIn(
                system=d.code, service=want.service, fields=list(want.fields or service.fields), purpose=want.purpose,
                legal_basis=want.legal_basis, expected_volume=want.volume, expires_on=expires))
            if app.status == "approved":
                granted.append(want.service)
                continue
            if want.outcome == "pending":
                continue
            if want.outcome == "reject":
                applications.decide(session, builder, app, DecisionIn(
                    decision="reject", reason="申请用途与所需字段不相称，请按最小必要原则重新申请"))
                continue
            applications.decide(session, builder, app, DecisionIn(
                decision="approve", fields=list(want.narrow_to) if want.narrow_to else None,
                reason="用途明确，依据充分", **want.terms))
            if app.status == "pending_operator":
                applications.decide(session, builder, app, DecisionIn(decision="approve", reason="涉及个人信息，同意"))
            if app.status == "approved":
                granted.append(want.service)
        out.append(DemoCredential(d.code, d.name, key, granted))
    return out


def _resource_code(session: Session, name: str) -> str:
    from onceonly.catalog.service import get_resource

    return get_resource(session, name).code


def write_credentials_file(home: Path, creds: list[DemoCredential]) -> Path:
    """ONCEONLY_HOME/demo-credentials.json: each demo system's API key and the services it may
    call, readable by the owner only."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / CREDENTIALS_FILE
    data = [{"system": c.system, "name": c.name, "api_key": c.api_key, "services": c.services} for c in creds]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
    os.chmod(path, 0o600)
    return path
