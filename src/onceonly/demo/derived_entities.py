"""Rows of the legal-entity resources (see specs_entities): registrations, licenses, taxes,
inspections and permits. Licenses, inspections, samplings and ratings are made once (memoized
on the world) because derived_credit builds the 双公示 lists and the blacklist from them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, timedelta

from onceonly.demo.companies import TRADE_CHARS, USCC_BODY, authority
from onceonly.demo.places import BY_CODE, COUNTIES, business_address
from onceonly.demo.registry import Row, rows_for
from onceonly.demo.world import CITY, CITY_CODE, Company, World, add_years, money, rand_date, sample_share
from onceonly.kit.identifiers import make_uscc

SELF_REGISTERED = "（直接登记）"


def rep_name(w: World, c: Company) -> str:
    return w.persons[c.legal_rep].name


def finances(w: World) -> dict[str, tuple[float, float, float]]:
    """Assets, revenue and taxes (万元) of each company for the last full year."""
    def make() -> dict[str, tuple[float, float, float]]:
        rng = w.rng("finances")
        out = {}
        for c in w.active_companies():
            if c.kind != "企业":
                continue
            assets = money(c.capital * rng.uniform(0.5, 3.0) + c.employees * rng.uniform(5, 30))
            revenue = money(assets * rng.uniform(0.3, 2.0))
            out[c.uscc] = (assets, revenue, money(revenue * rng.uniform(0.01, 0.06)))
        return out

    return w.memo("finances", make)


def rated(w: World) -> dict[str, str]:
    def make() -> dict[str, str]:
        rng = w.rng("tax_rating")
        year = w.as_of.year - 1
        out = {}
        for c in w.active_companies():
            if c.kind != "企业" or c.established.year > year:
                continue
            new = c.established.year == year
            out[c.uscc] = "M" if new else rng.choices("ABMCD", (12, 58, 15, 10, 5))[0]
        return out

    return w.memo("ratings", make)


@rows_for("enterprise_registration")
def enterprise_registration(w: World) -> Iterator[Row]:
    for c in w.companies:
        rep = w.persons[c.legal_rep]
        yield {
            "uscc": c.uscc, "name": c.name, "entity_type": c.kind, "org_type": c.org_type,
            "legal_rep_name": rep.name, "legal_rep_citizen_id": rep.citizen_id, "registered_capital": c.capital,
            "established_date": c.established, "industry": c.industry, "business_scope": c.scope, "region": c.county,
            "address": c.address, "registration_authority": authority(c), "status": c.status,
            "cancelled_date": c.closed_on, "employees": c.employees,
        }


@rows_for("business_license")
def business_license(w: World) -> Iterator[Row]:
    rng = w.rng("business_license")
    status = {"存续": "有效", "注销": "已注销", "吊销": "已吊销"}
    for c in w.companies:
        term = "长期" if rng.random() < 0.7 or c.kind != "企业" else \
            f"{c.established:%Y年%m月%d日}至{add_years(c.established, 20):%Y年%m月%d日}"
        yield {
            "uscc": c.uscc, "name": c.name, "org_type": c.org_type, "legal_rep_name": rep_name(w, c),
            "registered_capital": c.capital, "established_date": c.established, "business_term": term,
            "address": c.address, "business_scope": c.scope, "issuing_authority": authority(c),
            "issue_date": rand_date(rng, c.established, c.closed_on or w.as_of), "status": status[c.status],
        }


@rows_for("enterprise_annual_report")
def enterprise_annual_report(w: World) -> Iterator[Row]:
    rng = w.rng("annual_report")
    last = w.as_of.year - 1
    for c in w.active_companies():
        if c.uscc not in finances(w) or c.established.year > last:
            continue
        assets, revenue, tax = finances(w)[c.uscc]
        for year in (last - 1, last):
            if c.established.year > year:
                continue
            f = 1.0 if year == last else rng.uniform(0.8, 1.1)
            yield {
                "uscc": c.uscc, "report_year": year, "name": c.name, "employees": max(1, int(c.employees * f)),
                "total_assets": money(assets * f), "revenue": money(revenue * f), "tax_paid": money(tax * f),
                "insured_employees": max(0, int(c.employees * f * rng.uniform(0.4, 1.0))),
                "assets_disclosed": rng.random() < 0.6,
                "submitted_date": rand_date(rng, date(year + 1, 1, 1), date(year + 1, 6, 30)),
            }


@rows_for("tax_credit_rating")
def tax_credit_rating(w: World) -> Iterator[Row]:
    rng = w.rng("tax_credit_rows")
    year = w.as_of.year - 1
    scores = {"A": (90, 100), "B": (70, 89), "M": (70, 89), "C": (40, 69), "D": (0, 39)}
    names = {c.uscc: c.name for c in w.companies}
    for code, rating in rated(w).items():
        yield {
            "uscc": code, "evaluation_year": year, "taxpayer_name": names[code], "rating": rating,
            "score": rng.randint(*scores[rating]), "published_date": date(year + 1, 4, rng.randint(20, 30)),
        }


@rows_for("tax_payment")
def tax_payment(w: World) -> Iterator[Row]:
    rng = w.rng("tax_payment")
    year = w.as_of.year - 1
    for c in w.active_companies():
        if c.uscc not in finances(w) or c.established.year > year:
            continue
        total = finances(w)[c.uscc][2]
        vat = money(total * rng.uniform(0.45, 0.65))
        cit = money(total * rng.uniform(0.15, 0.3))
        yield {
            "uscc": c.uscc, "tax_year": year, "taxpayer_name": c.name, "vat": vat, "corporate_income_tax": cit,
            "other_taxes": money(total - vat - cit), "total": total,
            "declared_date": rand_date(rng, date(year + 1, 3, 1), date(year + 1, 5, 31)),
        }


@rows_for("social_organization")
def social_organization(w: World) -> Iterator[Row]:
    rng = w.rng("social_orgs")
    topics = ("个体劳动者", "餐饮行业", "书法家", "摄影家", "老年体育", "茶叶", "电子商务", "物流", "建筑业",
              "青年企业家", "家庭农场", "旅游", "律师", "注册会计师", "宣纸文化")
    services = {"幼儿园": "jtj", "养老院": "mzj", "职业培训学校": "rsj", "社会工作服务中心": "mzj", "康复中心": "cl",
                "青少年活动中心": "jtj"}
    reps = w.living_adults(30)
    names: set[str] = set()
    codes: set[str] = set()
    for _ in range(max(10, len(w.companies) // 50)):
        kind = rng.choices(("1", "2", "3"), (45, 50, 5))[0]
        county = rng.choice(COUNTIES)
        service = ""
        while True:
            trade = rng.choice(TRADE_CHARS) + rng.choice(TRADE_CHARS)
            if kind == "1":
                place = CITY if rng.random() < 0.4 else f"{county.name}{trade}"
                name = f"{place}{rng.choice(topics)}协会"
            elif kind == "2":
                service = rng.choice(sorted(services))
                name = f"{county.name}{trade}{service}"
            else:
                name = f"{CITY}{trade}{rng.choice(('教育', '慈善', '助学'))}基金会"
            if name not in names:
                names.add(name)
                break
        established = rand_date(rng, date(1995, 1, 1), w.as_of)
        while True:
            body = ("MJ" + "".join(rng.choice(USCC_BODY) for _ in range(6)) if established.year >= 2016
                    else f"{rng.randrange(10**8):08d}")
            code = make_uscc("5", kind, CITY_CODE if kind == "3" else county.code, body)
            if code not in codes:
                codes.add(code)
                break
        rep = rng.choice(reps)
        if kind == "1":  # trade associations register directly since the 2016 reform
            supervisor = SELF_REGISTERED if established.year >= 2016 or rng.random() < 0.5 else w.org("mzj").name
        else:
            supervisor = w.org(services[service] if kind == "2" else "mzj").name
        yield {
            "uscc": code, "name": name, "org_type": ("社会团体", "民办非企业单位", "基金会")[int(kind) - 1],
            "legal_rep_name": rep.name, "legal_rep_citizen_id": rep.citizen_id,
            "supervisor": supervisor,
            "registered_funds": float(rng.choice((3, 5, 10, 20, 50, 200, 400))), "established_date": established,
            "address": business_address(rng, county), "business_scope": "开展行业交流、培训、咨询服务，维护会员合法权益"
            if kind == "1" else "依照章程开展公益服务活动",
            "status": rng.choices(("正常", "注销", "撤销"), (90, 7, 3))[0],
        }


FOOD_ITEMS = {"1": "预包装食品（含冷藏冷冻食品）销售；散装食品销售", "2": "热食类食品制售；冷食类食品制售",
              "3": "热食类食品制售"}


def food_licenses(w: World) -> list[Row]:
    def make() -> list[Row]:
        rng = w.rng("food_licenses")
        out: list[Row] = []
        seq = 0
        for c in w.companies:
            p = {"H": 0.95, "F": 0.3, "C": 0.03}.get(c.industry, 0.0)
            if c.kind == "农民专业合作社" or rng.random() > p:
                continue
            t = {"H": "2", "F": "1"}.get(c.industry, "3")
            seq += 1
            issued = rand_date(rng, max(c.established, date(2015, 10, 1)), c.closed_on or w.as_of)
            until = add_years(issued, 5)
            out.append({
                "license_no": f"JY{t}{c.county}{seq:06d}{seq % 10}", "operator_name": c.name, "uscc": c.uscc,
                "legal_rep_name": rep_name(w, c), "premises": c.address,
                "business_type": {"1": "食品销售经营者", "2": "餐饮服务经营者", "3": "单位食堂"}[t],
                "business_items": FOOD_ITEMS[t],
                "issue_date": issued, "valid_until": until,
                "issuing_authority": authority(c), "status": "有效" if c.active and until >= w.as_of else "注销",
            })
        return out

    return w.memo("food_licenses", make)


@rows_for("food_business_license")
def food_business_license(w: World) -> Iterator[Row]:
    yield from food_licenses(w)


FOODS = (
    ("粮食加工品", "大米", "镉（以Cd计）"), ("粮食加工品", "挂面", "脱氢乙酸及其钠盐"),
    ("肉制品", "酱卤肉制品", "亚硝酸盐"),
    ("蔬菜", "韭菜", "腐霉利"), ("蔬菜", "芹菜", "毒死蜱"), ("蔬菜", "豇豆", "噻虫胺"), ("水产品", "鲫鱼", "恩诺沙星"),
    ("酒类", "白酒", "甜蜜素"), ("饮料", "包装饮用水", "铜绿假单胞菌"), ("茶叶及相关制品", "绿茶", "草甘膦"),
    ("糕点", "月饼", "菌落总数"), ("餐饮食品", "复用餐饮具", "大肠菌群"),
)


def samplings(w: World) -> list[Row]:
    def make() -> list[Row]:
        rng = w.rng("food_sampling")
        holders = [c for c in w.active_companies() if c.industry in ("F", "H")]
        out: list[Row] = []
        for seq in range(1, max(20, len(w.companies) // 10) + 1):
            c = rng.choice(holders)
            category, food, item = rng.choice(FOODS)
            sampled = rand_date(rng, add_years(w.as_of, -2), w.as_of)
            announced = sampled + timedelta(days=rng.randint(20, 40))
            failed = rng.random() < 0.04
            out.append({
                "sample_no": f"DC{sampled:%y}{c.county}{seq:06d}", "food_name": food, "food_category": category,
                "sampled_name": c.name, "sampled_uscc": c.uscc,
                "specification": rng.choice(("散装", "500g/袋", "2.5kg/袋",
                                                                                              "550ml/瓶", "计量称重")),
                "production_date": sampled - timedelta(days=rng.randint(0, 60)),
                "result": "不合格" if failed else "合格",
                "failed_item": item if failed else None, "sampling_date": sampled,
                "announced_date": announced if announced <= w.as_of else None,
            })
        return out

    return w.memo("samplings", make)


@rows_for("food_safety_sampling")
def food_safety_sampling(w: World) -> Iterator[Row]:
    yield from samplings(w)


def chemical_licenses(w: World) -> list[Row]:
    def make() -> list[Row]:
        rng = w.rng("chemicals")
        scopes = ("汽油、柴油、液化石油气", "甲醇、乙醇、丙酮、乙酸乙酯", "硫酸、盐酸、氢氧化钠",
                  "油漆、稀释剂、松香水")
        out: list[Row] = []
        traders = [c for c in w.companies if c.kind == "企业" and c.industry in ("F", "C")]
        for c in sample_share(rng, traders, 0.03, 3):
            issued = rand_date(rng, max(c.established, add_years(w.as_of, -3)), c.closed_on or w.as_of)
            out.append({
                "license_no": f"皖P安经（{issued.year}）{len(out) + 1:04d}", "uscc": c.uscc, "name": c.name,
                "legal_rep_name": rep_name(w, c), "address": c.address, "scope": rng.choice(scopes),
                "mode": rng.choice(("带储存经营", "不带储存经营")), "issue_date": issued,
                "valid_until": add_years(issued, 3), "status": "有效" if c.active else "注销",
            })
        return out

    return w.memo("chemical_licenses", make)


@rows_for("hazardous_chemicals_license")
def hazardous_chemicals_license(w: World) -> Iterator[Row]:
    yield from chemical_licenses(w)


def inspections(w: World) -> list[Row]:
    def make() -> list[Row]:
        rng = w.rng("inspections")
        chem = {r["uscc"] for r in chemical_licenses(w)}
        out: list[Row] = []
        for c in w.active_companies():
            if c.uscc not in chem and (c.industry not in ("C", "E", "G") or rng.random() > 0.15):
                continue
            day = rand_date(rng, add_years(w.as_of, -2), w.as_of)
            hazards = rng.choices(range(9), (40, 20, 12, 10, 6, 5, 3, 2, 2))[0]
            major = hazards > 0 and rng.random() < 0.05
            rectified = hazards == 0 or rng.random() < 0.9
            result = ("未发现问题" if hazards == 0 else "存在重大事故隐患，责令停产整改" if major
                      else "发现一般隐患，责令限期整改")
            out.append({
                "inspection_no": f"AJ{day.year}{len(out) + 1:06d}", "uscc": c.uscc, "name": c.name,
                "inspection_date": day, "inspection_type": rng.choice(("双随机抽查", "专项检查", "日常检查")),
                "hazards_found": hazards, "major_hazard": major, "rectified": rectified,
                "rectify_deadline": day + timedelta(days=rng.randint(15, 60)) if hazards else None, "result": result,
            })
        return out

    return w.memo("inspections", make)


@rows_for("safety_inspection")
def safety_inspection(w: World) -> Iterator[Row]:
    yield from inspections(w)


POLLUTANTS = ("颗粒物、二氧化硫、氮氧化物", "化学需氧量、氨氮", "挥发性有机物", "颗粒物、挥发性有机物")


def pollutant_permits(w: World) -> list[Row]:
    def make() -> list[Row]:
        rng = w.rng("pollutant_permits")
        classes = ("汽车零部件及配件制造", "竹、藤、棕、草等制品制造", "塑料制品业", "通用设备制造业", "食品制造业",
                   "纺织业", "畜禽养殖业")
        out: list[Row] = []
        emitters = [c for c in w.active_companies() if c.kind == "企业" and c.industry in ("C", "A")]
        for c in sample_share(rng, emitters, 0.15, 3):
            start = rand_date(rng, max(c.established, add_years(w.as_of, -5)), w.as_of)
            out.append({
                "permit_no": f"{c.uscc}001{rng.choice('VPQRUWXYZ')}", "uscc": c.uscc, "name": c.name,
                "management_class": rng.choices(("重点管理", "简化管理", "登记管理"), (15, 35, 50))[0],
                "industry_class": classes[-1] if c.industry == "A" else rng.choice(classes[:-1]),
                "pollutants": rng.choice(POLLUTANTS),
                "outlets": rng.randint(1, 8), "valid_from": start, "valid_until": add_years(start, 5),
                "issuing_authority": f"{CITY}生态环境局",
            })
        return out

    return w.memo("pollutant_permits", make)


@rows_for("pollutant_permit")
def pollutant_permit(w: World) -> Iterator[Row]:
    yield from pollutant_permits(w)


@rows_for("energy_consumption")
def energy_consumption(w: World) -> Iterator[Row]:
    rng = w.rng("energy")
    big = sorted((c for c in w.active_companies() if c.industry == "C" and c.kind == "企业"),
                 key=lambda c: (-c.capital, c.uscc))[: max(5, len(w.companies) // 300)]
    for c in big:
        base = math.exp(rng.gauss(9.5, 0.9))
        for year in range(w.as_of.year - 4, w.as_of.year):
            tce = round(base * rng.uniform(0.9, 1.1), 1)
            yield {
                "uscc": c.uscc, "year": year, "name": c.name, "industry": c.industry, "total_tce": tce,
                "electricity_mwh": round(tce * rng.uniform(2.0, 6.0), 1), "coal_t": round(tce * rng.uniform(0, 0.8), 1),
                "gas_10k_m3": round(tce * rng.uniform(0.01, 0.06), 2), "intensity": round(rng.uniform(0.05, 1.2), 3),
                "target_met": rng.random() < 0.85,
            }


def construction_permits(w: World) -> list[Row]:
    def make() -> list[Row]:
        rng = w.rng("construction")
        active = w.active_companies()
        builders = [c for c in active if c.industry == "K" and c.kind == "企业"] or active
        contractors = [c for c in active if c.industry == "E" and c.kind == "企业"] or active
        out: list[Row] = []
        per_day: dict[tuple[str, date], int] = {}
        for _ in range(max(10, len(w.companies) // 60)):
            b, k = rng.choice(builders), rng.choice(contractors)
            issued = rand_date(rng, add_years(w.as_of, -5), w.as_of)
            county = BY_CODE[b.county]
            per_day[(county.code, issued)] = n = per_day.get((county.code, issued), 0) + 1
            kind = rng.choice(("住宅项目", "厂房建设项目", "综合楼工程", "商业综合体项目"))
            area = round(rng.uniform(3000, 120000), 2)
            start = issued + timedelta(days=rng.randint(10, 60))
            out.append({
                "permit_no": f"{county.code}{issued:%Y%m%d}{n:02d}01", "project_name": f"{b.name[:-4]}{kind}",
                "builder_uscc": b.uscc, "builder_name": b.name, "contractor_uscc": k.uscc, "contractor_name": k.name,
                "location": business_address(rng, county), "region": county.code, "area_m2": area,
                "contract_price": money(area * rng.uniform(0.15, 0.35)), "start_date": start,
                "end_date": start + timedelta(days=rng.randint(365, 1100)), "issue_date": issued,
            })
        return out

    return w.memo("construction_permits", make)


@rows_for("construction_permit")
def construction_permit(w: World) -> Iterator[Row]:
    yield from construction_permits(w)
