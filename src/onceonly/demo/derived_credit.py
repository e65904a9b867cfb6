"""Rows of the credit resources (双公示 licenses and penalties, the blacklist) and of public
investment and procurement. They are built from what the departments already recorded: the
license list is the union of the licenses issued, penalties follow failed food samplings and
unrectified hazards, the blacklist follows D tax ratings and revoked business licenses."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, timedelta

from onceonly.demo.derived_entities import (
    chemical_licenses,
    construction_permits,
    food_licenses,
    inspections,
    pollutant_permits,
    rated,
    rep_name,
    samplings,
)
from onceonly.demo.places import COUNTIES
from onceonly.demo.registry import Row, rows_for
from onceonly.demo.world import Company, World, add_years, money, rand_date


def _decision_no(seq: dict[tuple[str, int], int], abbr: str, kind: str, on: date) -> str:
    seq[(abbr + kind, on.year)] = n = seq.get((abbr + kind, on.year), 0) + 1
    return f"{abbr}{kind}〔{on.year}〕{n:05d}号"


@rows_for("administrative_license")
def administrative_license(w: World) -> Iterator[Row]:
    since = add_years(w.as_of, -5)
    seq: dict[tuple[str, int], int] = {}
    by_uscc = {c.uscc: c for c in w.companies}
    sources: list[tuple[str, str, str, str, list[Row], str, str, str, str | None]] = [
        # dept, abbr, license name, category, rows, uscc field, date field, content, valid-until field
        ("scjgj", "示市监", "食品经营许可证", "普通", food_licenses(w), "uscc", "issue_date", "business_items",
         "valid_until"),
        ("yjglj", "示应急", "危险化学品经营许可证", "普通", chemical_licenses(w), "uscc", "issue_date", "scope",
         "valid_until"),
        ("sthjj", "示环", "排污许可证", "普通", pollutant_permits(w), "uscc", "valid_from", "pollutants",
         "valid_until"),
        ("zjj", "示建", "建筑工程施工许可证", "普通", construction_permits(w), "builder_uscc", "issue_date",
         "project_name", None),
    ]
    rows: list[tuple[date, str, Row]] = []
    for dept, abbr, title, category, records, code_field, date_field, content_field, until_field in sources:
        org = w.org(dept)
        for r in records:
            decided: date = r[date_field]
            c = by_uscc.get(r[code_field])
            if decided < since or c is None:
                continue
            rows.append((decided, abbr, {
                "counterpart_name": c.name,
                "counterpart_type": "个体工商户" if c.kind == "个体工商户" else "法人及非法人组织",
                "counterpart_uscc": c.uscc, "legal_rep_name": rep_name(w, c), "license_name": title,
                "license_category": category, "license_content": str(r[content_field]), "decision_date": decided,
                "valid_from": decided, "valid_until": r[until_field] if until_field else None,
                "authority": org.name, "authority_uscc": org.code,
            }))
    for c in w.companies:  # establishment registrations (设立登记) are licenses too
        if c.established >= since:
            org = w.org("scjgj")
            rows.append((c.established, "示市监", {
                "counterpart_name": c.name,
                "counterpart_type": "个体工商户" if c.kind == "个体工商户" else "法人及非法人组织",
                "counterpart_uscc": c.uscc, "legal_rep_name": rep_name(w, c), "license_name": "营业执照",
                "license_category": "登记", "license_content": "设立登记", "decision_date": c.established,
                "valid_from": c.established, "valid_until": None, "authority": org.name, "authority_uscc": org.code,
            }))
    rows.sort(key=lambda t: (t[0], t[1], t[2]["counterpart_uscc"], t[2]["license_name"]))
    for decided, abbr, row in rows:
        yield {"decision_no": _decision_no(seq, abbr, "许", decided), **row}


PENALTIES = {
    "food": ("生产经营不符合食品安全标准的食品", "《中华人民共和国食品安全法》第一百二十四条", (0.5, 10.0)),
    "safety": ("未采取措施消除事故隐患", "《中华人民共和国安全生产法》第一百零二条", (1.0, 5.0)),
    "env": ("超过大气污染物排放标准排放大气污染物", "《中华人民共和国大气污染防治法》第九十九条", (10.0, 100.0)),
    "market": ("发布虚假广告、进行虚假宣传", "《中华人民共和国反不正当竞争法》第二十条", (1.0, 20.0)),
    "tax": ("偷税（少缴应纳税款）", "《中华人民共和国税收征收管理法》第六十三条", (5.0, 50.0)),
}


def penalties(w: World) -> list[Row]:
    def make() -> list[Row]:
        rng = w.rng("penalties")
        by_uscc = {c.uscc: c for c in w.companies}
        cases: list[tuple[date, str, Company, str]] = []  # (date, dept, company, kind)
        for s in samplings(w):
            if s["result"] == "不合格":
                cases.append((s["sampling_date"] + timedelta(days=rng.randint(30, 90)), "scjgj",
                              by_uscc[s["sampled_uscc"]], "food"))
        for i in inspections(w):
            if i["major_hazard"] and not i["rectified"]:
                cases.append((i["inspection_date"] + timedelta(days=rng.randint(10, 40)), "yjglj",
                              by_uscc[i["uscc"]], "safety"))
        for c in w.active_companies():
            r = rng.random()
            if c.industry == "C" and r < 0.01:
                cases.append((rand_date(rng, add_years(w.as_of, -3), w.as_of), "sthjj", c, "env"))
            elif r < 0.012:
                cases.append((rand_date(rng, add_years(w.as_of, -3), w.as_of), "scjgj", c, "market"))
        for code, rating in sorted(rated(w).items()):
            if rating == "D" and rng.random() < 0.5:
                cases.append((rand_date(rng, add_years(w.as_of, -2), w.as_of), "swj", by_uscc[code], "tax"))
        abbr = {"scjgj": "示市监", "yjglj": "示应急", "sthjj": "示环", "swj": "示税稽"}
        seq: dict[tuple[str, int], int] = {}
        out: list[Row] = []
        for decided, dept, c, kind in sorted(cases, key=lambda t: (t[0], t[1], t[2].uscc, t[3])):
            decided = min(decided, w.as_of)
            facts, basis, (low, high) = PENALTIES[kind]
            warning = kind == "market" and rng.random() < 0.2
            org = w.org(dept)
            out.append({
                "decision_no": _decision_no(seq, abbr[dept], "罚", decided), "counterpart_name": c.name,
                "counterpart_uscc": c.uscc, "legal_rep_name": rep_name(w, c), "violation_type": facts,
                "violation_facts": f"当事人{c.name}{facts}，经调查属实。", "penalty_basis": basis,
                "penalty_type": "警告" if warning else "罚款",
                "fine": 0.0 if warning else money(rng.uniform(low, high)),
                "decision_date": decided, "publish_until": add_years(decided, 1 if warning else 3),
                "authority": org.name, "authority_uscc": org.code,
            })
        return out

    return w.memo("penalties", make)


@rows_for("administrative_penalty")
def administrative_penalty(w: World) -> Iterator[Row]:
    yield from penalties(w)


@rows_for("dishonest_list")
def dishonest_list(w: World) -> Iterator[Row]:
    rng = w.rng("dishonest")
    by_uscc = {c.uscc: c for c in w.companies}
    entries: list[tuple[Company, str, str, str]] = []
    for code, rating in sorted(rated(w).items()):
        if rating == "D" and rng.random() < 0.4:
            entries.append((by_uscc[code], "重大税收违法失信主体", "偷税、逃避追缴欠税，经税务稽查认定", "swj"))
    for c in w.companies:
        if c.status == "吊销" and rng.random() < 0.3:
            entries.append((c, "严重违法失信企业名单", "被吊销营业执照后未依法办理注销登记", "scjgj"))
    for n, (c, kind, reason, dept) in enumerate(entries, 1):
        listed = rand_date(rng, max(c.closed_on or c.established, add_years(w.as_of, -5)), w.as_of)
        removed = add_years(listed, 3) if add_years(listed, 3) <= w.as_of and rng.random() < 0.6 else None
        yield {
            "list_no": f"SX{listed.year}{n:06d}", "name": c.name, "uscc": c.uscc, "legal_rep_name": rep_name(w, c),
            "list_type": kind, "reason": reason, "listed_date": listed, "listing_authority": w.org(dept).name,
            "removal_date": removed, "status": "已移出" if removed else "有效",
        }


@rows_for("investment_projects")
def investment_projects(w: World) -> Iterator[Row]:
    rng = w.rng("investment")
    applicants = [c for c in w.active_companies() if c.kind == "企业"]
    orgs = sorted(w.orgs.values(), key=lambda o: o.key)
    contents = ("新建标准化厂房及配套设施", "购置自动化生产线，技术改造", "建设商业综合体及地下停车场",
                "建设住宅及配套商业", "新建仓储物流中心", "数字化车间改造")
    for seq in range(1, max(10, len(w.companies) // 50) + 1):
        approval = rng.choices(("备案", "核准", "审批"), (80, 10, 10))[0]
        if approval == "审批":  # government-funded projects are approved for the departments themselves
            org = rng.choice(orgs)
            code, name, county = org.code, org.name, rng.choice(COUNTIES).code
            title = f"{org.short_name}业务用房维修改造项目"
        else:
            c = rng.choice(applicants)
            code, name, county = c.uscc, c.name, c.county
            title = f"{c.name[:-4]}{rng.choice(('年产', '扩建', '技改'))}项目"
        approved = rand_date(rng, add_years(w.as_of, -4), w.as_of)
        industry = rng.choice(("04", "13", "36", "47", "59", "70"))
        kind = ("审批", "核准", "备案").index(approval) + 1
        yield {
            "project_code": f"{approved.year}-{county}-{industry}-0{kind}-{seq:06d}",
            "project_name": title, "applicant_uscc": code, "applicant_name": name, "region": county,
            "total_investment": money(math.exp(rng.gauss(8.0, 1.2))), "approval_type": approval,
            "approval_date": approved, "content": rng.choice(contents),
            "status": rng.choices(("拟开工", "在建", "已竣工"), (25, 45, 30))[0],
        }


@rows_for("government_procurement")
def government_procurement(w: World) -> Iterator[Row]:
    rng = w.rng("procurement")
    orgs = sorted(w.orgs.values(), key=lambda o: o.key)
    suppliers = [c for c in w.active_companies() if c.kind == "企业" and c.industry in ("I", "E", "F", "L")]
    items = {"I": ("信息化系统运维服务", "政务云资源租赁服务", "网络安全等级保护测评服务"),
             "E": ("办公楼维修改造工程", "档案库房改造工程"), "F": ("办公设备采购", "办公家具采购"),
             "L": ("物业管理服务", "审计服务", "法律顾问服务")}
    for seq in range(1, max(10, len(w.companies) // 40) + 1):
        org, c = rng.choice(orgs), rng.choice(suppliers)
        signed = rand_date(rng, add_years(w.as_of, -3), w.as_of)
        published = signed + timedelta(days=rng.randint(1, 2))
        yield {
            "contract_no": f"SLZC-{signed.year}-{seq:05d}",
            "project_name": f"{org.short_name}{rng.choice(items[c.industry])}",
            "purchaser": org.name, "purchaser_uscc": org.code, "supplier_name": c.name, "supplier_uscc": c.uscc,
            "amount": money(math.exp(rng.gauss(3.5, 1.2))),
            "method": rng.choices(("公开招标", "竞争性磋商", "竞争性谈判", "询价", "单一来源"), (40, 30, 10, 15, 5))[0],
            "sign_date": signed, "published_date": min(published, w.as_of),
        }

