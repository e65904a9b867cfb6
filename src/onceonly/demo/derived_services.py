"""Rows of the service resources (see specs_services): drivers and their cars, pupils in the
city's schools, housing fund accounts of insured employees, homes and their purchase
contracts, utility bills of real households."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from onceonly.demo.companies import TRADE_CHARS
from onceonly.demo.derived_people import PAYING_BANKS, employment
from onceonly.demo.places import BY_CODE, ROADS, street_address
from onceonly.demo.registry import Row, rows_for
from onceonly.demo.world import CITY, Person, World, add_years, money, rand_date, sample_share

PLATE_CHARS = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
VIN_CHARS = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
CAR_MODELS = ("大众朗逸", "丰田卡罗拉", "日产轩逸", "本田雅阁", "比亚迪秦PLUS", "吉利帝豪", "长安CS75", "哈弗H6",
              "奇瑞瑞虎8", "五菱宏光", "特斯拉Model 3", "理想L7", "比亚迪宋PLUS", "别克英朗")
TRUCK_MODELS = ("江淮帅铃", "东风多利卡", "解放J6P", "福田欧曼", "重汽豪沃")
COLORS = ("白", "黑", "灰", "银", "蓝", "红")
GRADES = ("一年级", "二年级", "三年级", "四年级", "五年级", "六年级", "七年级", "八年级", "九年级",
          "高一", "高二", "高三")
ESTATE_WORDS = ("华府", "名苑", "花园", "雅苑", "公馆", "御景湾", "学府", "壹号院", "春天", "新城")


def unique(rng: random.Random, seen: set[str], make: Any) -> str:
    while True:
        value: str = make(rng)
        if value not in seen:
            seen.add(value)
            return value


@dataclass(frozen=True, slots=True)
class Driver:
    person: Person
    klass: str
    first_issue: date


def drivers(w: World) -> list[Driver]:
    def make() -> list[Driver]:
        rng = w.rng("drivers")
        out = []
        for p in w.living_adults():
            if w.age(p) > 75 or rng.random() > (0.62 if p.male else 0.34):
                continue
            klass = rng.choices(("C1", "C2", "B2", "A2", "A1", "D", "E"), (75, 8, 6, 3, 1, 5, 2))[0]
            out.append(Driver(p, klass, rand_date(rng, max(add_years(p.birth, 18), date(1990, 1, 1)), w.as_of)))
        return out

    return w.memo("drivers", make)


@rows_for("driver_license")
def driver_license(w: World) -> Iterator[Row]:
    rng = w.rng("driver_license")
    for d in drivers(w):
        first = d.first_issue
        if w.as_of < add_years(first, 6):
            start, until = first, add_years(first, 6)
        elif w.as_of < add_years(first, 16):
            start, until = add_years(first, 6), add_years(first, 16)
        else:
            start, until = add_years(first, 16), None  # 长期
        p = d.person
        yield {
            "license_no": p.citizen_id, "name": p.name, "sex": p.sex, "permitted_class": d.klass,
            "first_issue_date": first, "valid_from": start, "valid_until": until,
            "status": rng.choices(("正常", "逾期未换证", "注销"), (95, 3, 2))[0],
            "issuing_authority": f"{CITY}公安局交通警察支队",
        }


@rows_for("motor_vehicle")
def motor_vehicle(w: World) -> Iterator[Row]:
    rng = w.rng("vehicles")
    plates: set[str] = set()
    owners: list[tuple[str, Any, date]] = [("个人", d.person, d.first_issue) for d in drivers(w)
                                           if rng.random() < 0.5]
    owners += [("单位", c, c.established) for c in w.active_companies() if rng.random() < 0.08]
    for kind, owner, since in owners:
        truck = kind == "单位" and rng.random() < 0.5
        registered = rand_date(rng, max(since, date(2005, 1, 1)), w.as_of)
        yield {
            "plate_no": unique(rng, plates, lambda r: "皖P" + "".join(r.choice(PLATE_CHARS) for _ in range(5))),
            "vehicle_type": rng.choice(("轻型普通货车", "重型半挂牵引车")) if truck
            else rng.choices(("小型普通客车", "小型轿车", "二轮摩托车"), (60, 32, 8))[0],
            "brand": rng.choice(TRUCK_MODELS if truck else CAR_MODELS),
            "vin": "L" + "".join(rng.choice(VIN_CHARS) for _ in range(16)), "owner_type": kind,
            "owner_citizen_id": owner.citizen_id if kind == "个人" else None,
            "owner_uscc": owner.uscc if kind == "单位" else None, "owner_name": owner.name,
            "color": rng.choice(COLORS), "registration_date": registered,
            "inspection_valid_until": date(w.as_of.year + rng.randint(0, 1), registered.month, min(registered.day, 28)),
            "status": rng.choices(("正常", "逾期未检验", "注销"), (92, 6, 2))[0],
        }


def students(w: World) -> list[Row]:
    """Pupils aged 6-17 placed in a school of their county at the grade their age gives."""
    def make() -> list[Row]:
        from onceonly.demo.derived_city import schools

        rng = w.rng("students")
        by_level: dict[tuple[str, str], list[Row]] = {}
        for s in schools(w):
            by_level.setdefault((s["region"], s["level"]), []).append(s)
        term = date(w.as_of.year, 9, 1) if w.as_of.month >= 9 else date(w.as_of.year - 1, 9, 1)
        out: list[Row] = []
        for p in w.living():
            age = w.age(p, term - timedelta(days=1))
            if not 6 <= age <= 17 or (age >= 15 and rng.random() < 0.12):
                continue
            grade = age - 6
            level = "小学" if grade < 6 else "初中" if grade < 9 else "高中"
            pool = by_level.get((p.county, level)) or next(v for (_, lv), v in sorted(by_level.items()) if lv == level)
            school = rng.choice(pool)
            first_grade = {"小学": 0, "初中": 6, "高中": 9}[level]
            h = w.households[p.household]
            guardian = next((w.persons[i] for i in (p.mother, p.father) if i is not None and w.persons[i].alive),
                            w.persons[h.head])
            out.append({
                "student_no": f"G{p.citizen_id}", "citizen_id": p.citizen_id, "name": p.name, "sex": p.sex,
                "birth_date": p.birth, "school_code": school["school_code"], "school_name": school["name"],
                "grade": GRADES[grade], "class_no": rng.randint(1, 8),
                "enrollment_date": date(term.year - (grade - first_grade), 9, 1),
                "guardian_name": guardian.name, "guardian_mobile": guardian.mobile,
            })
        return out

    return w.memo("students", make)


@rows_for("student_status")
def student_status(w: World) -> Iterator[Row]:
    yield from students(w)


@rows_for("housing_fund_account")
def housing_fund_account(w: World) -> Iterator[Row]:
    rng = w.rng("housing_fund")
    seen: set[str] = set()
    jobs = employment(w)
    for idx in sorted(jobs):
        job = jobs[idx]
        if rng.random() > {"企业职工": 0.35, "机关事业单位": 0.98}.get(job.kind, 0.0):
            continue
        p = w.persons[idx]
        rate = 0.12 if job.kind == "机关事业单位" else rng.choice((0.05, 0.08, 0.10, 0.12))
        opened = max(job.start, date(1999, 1, 1))
        monthly = money(job.base * rate * 2)
        months = max(1, (w.as_of - opened).days // 30)
        yield {
            "account_no": unique(rng, seen, lambda r: f"3418{r.randrange(10**8):08d}"),
            "citizen_id": p.citizen_id, "name": p.name, "employer_uscc": job.employer_uscc,
            "employer_name": job.employer_name, "open_date": opened, "deposit_base": job.base,
            "deposit_rate": rate, "monthly_deposit": monthly,
            "balance": money(monthly * min(months, 120) * rng.uniform(0.15, 0.9)),
            "status": rng.choices(("正常缴存", "封存", "销户"), (90, 8, 2))[0],
        }


@rows_for("physician_registration")
def physician_registration(w: World) -> Iterator[Row]:
    from onceonly.demo.derived_city import medical_institutions

    rng = w.rng("physicians")
    institutions = medical_institutions(w)
    scopes = {"临床": ("内科专业", "外科专业", "妇产科专业", "儿科专业", "全科医学专业", "急救医学专业"),
              "中医": ("中医专业", "中西医结合专业"), "口腔": ("口腔专业",), "公共卫生": ("公共卫生类别专业",)}
    seen: set[str] = set()
    eligible = [p for p in w.living_adults(26) if w.age(p) <= 65 and p.education in ("10", "20", "30")]
    for p in sample_share(rng, eligible, 0.012, 5):
        category = rng.choices(tuple(scopes), (70, 15, 8, 7))[0]
        inst = rng.choice(institutions)
        county = p.county
        yield {
            "certificate_no": unique(rng, seen, lambda r, c=county: f"11{c}{r.randrange(10**7):07d}"),
            "citizen_id": p.citizen_id, "name": p.name, "sex": p.sex, "practice_category": category,
            "practice_scope": rng.choice(scopes[category]), "institution_name": inst["name"],
            "institution_uscc": inst["uscc"],
            "title": rng.choices(("主任医师", "副主任医师", "主治医师", "医师"), (8, 17, 35, 40))[0],
            "registration_date": rand_date(rng, add_years(p.birth, 25), w.as_of),
        }


@rows_for("cultivated_land_subsidy")
def cultivated_land_subsidy(w: World) -> Iterator[Row]:
    rng = w.rng("land_subsidy")
    rates = {w.as_of.year - 1: 108.5, w.as_of.year: 110.2}
    for h in w.households:
        head = w.persons[h.head]
        if h.urban or not head.alive:
            continue
        area = round(rng.uniform(1.5, 12.0), 2)
        for year, rate in rates.items():
            yield {
                "citizen_id": head.citizen_id, "subsidy_year": year, "name": head.name,
                "household_number": h.number, "household_region": h.county, "area_mu": area,
                "amount": money(area * rate), "bank": f"{CITY}农村商业银行" if rng.random() < 0.85
                else rng.choice(PAYING_BANKS), "paid_date": date(year, 6, rng.randint(15, 30)),
            }


@rows_for("utility_payment")
def utility_payment(w: World) -> Iterator[Row]:
    rng = w.rng("utilities")
    urban = [h for h in w.households if h.urban]
    sample = sorted(rng.sample(urban, min(len(urban), max(20, len(w.persons) // 20))), key=lambda h: h.idx)
    year = w.as_of.year
    for h in sample:
        living = [w.persons[i] for i in h.members if w.persons[i].alive]
        head = living[0] if living else w.persons[h.head]
        size = max(1, len(living))
        gas = rng.random() < 0.7
        for month in range(1, 13):
            season = 1.5 if month in (1, 2, 7, 8, 12) else 1.0
            water = round(size * rng.uniform(2.5, 4.5), 1)
            power = round(size * rng.uniform(45, 90) * season, 0)
            gas_m3 = round(size * rng.uniform(3, 8) * (1.8 if month in (1, 2, 12) else 1.0), 1) if gas else None
            paid = rng.random() < 0.97
            yield {
                "account_no": f"3418{h.idx + 1:08d}", "period": f"{year}-{month:02d}", "household_number": h.number,
                "holder_citizen_id": head.citizen_id, "holder_name": head.name, "address": h.address,
                "water_m3": water, "water_fee": money(water * 2.6), "electricity_kwh": power,
                "electricity_fee": money(power * 0.5653), "gas_m3": gas_m3,
                "gas_fee": money(gas_m3 * 3.05) if gas_m3 is not None else None, "paid": paid,
                "paid_date": date(year, month, rng.randint(5, 28)) if paid else None,
            }


@dataclass(frozen=True, slots=True)
class Property:
    row: Row
    project: str | None
    buyer: Person | None


def properties(w: World) -> list[Property]:
    """Homes of households (and premises of companies), registered since the 2016 unified registry."""
    def make() -> list[Property]:
        rng = w.rng("real_estate")
        seq: dict[int, int] = {}
        out: list[Property] = []

        def add(holder: Any, person: Person | None, county: str, location: str, usage: str, area: float,
                acquisition: str, project: str | None, shared: bool) -> None:
            land = "JC" if acquisition == "自建" else "GB"
            row = {
                "certificate_no": "",
                "unit_no": f"{county}{rng.randrange(10**6):06d}{land}{rng.randrange(10**5):05d}F"
                           f"{rng.randrange(10**8):08d}",
                "holder_type": "个人" if person else "单位", "holder_name": holder.name,
                "holder_citizen_id": person.citizen_id if person else None,
                "holder_uscc": None if person else holder.uscc,
                "co_ownership": "共同共有" if shared else "单独所有", "location": location, "region": county,
                "usage": usage, "area_m2": area, "acquisition": acquisition,
                "registration_date": rand_date(rng, date(2016, 1, 1), w.as_of),
                "mortgaged": acquisition.startswith("买卖") and rng.random() < 0.55,
            }
            out.append(Property(row, project, person))

        for h in w.households:
            head = w.persons[h.head]
            if not head.alive or rng.random() > (0.75 if h.urban else 0.6):
                continue
            county = BY_CODE[h.county]
            for n in range(2 if rng.random() < 0.15 else 1):
                if h.urban or n:
                    how = rng.choices(("买卖（新建商品房）", "买卖（存量房）", "继承"), (55, 38, 7))[0]
                    project = f"{rng.choice(ROADS)[:2]}{rng.choice(ESTATE_WORDS)}" if how.endswith("商品房）") else None
                    where = h.address if n == 0 else street_address(rng, county, rng.choice(county.towns), True)
                    add(head, head, h.county, where, "住宅", round(rng.uniform(60, 160), 2), how, project,
                        head.spouse is not None)
                else:
                    add(head, head, h.county, h.address, "住宅", round(rng.uniform(90, 260), 2),
                        "自建" if rng.random() < 0.9 else "继承", None, head.spouse is not None)
        for c in w.active_companies():
            if c.kind != "企业" or rng.random() > 0.12:
                continue
            usage = rng.choices(("工业", "商业", "办公"), (50, 30, 20))[0]
            area = {"工业": (500, 20000), "商业": (50, 500), "办公": (80, 1000)}[usage]
            add(c, None, c.county, c.address, usage, round(rng.uniform(*area), 2), "买卖（存量房）", None, False)
        out.sort(key=lambda p: (p.row["registration_date"], p.row["unit_no"]))
        for prop in out:  # certificates are numbered in the order they were issued, per year
            year = prop.row["registration_date"].year
            seq[year] = seq.get(year, 0) + 1
            prop.row["certificate_no"] = f"皖（{year}）{CITY}不动产权第{seq[year]:07d}号"
        return out

    return w.memo("properties", make)


@rows_for("real_estate_registration")
def real_estate_registration(w: World) -> Iterator[Row]:
    for prop in properties(w):
        yield prop.row


@rows_for("housing_contract")
def housing_contract(w: World) -> Iterator[Row]:
    rng = w.rng("housing_contract")
    developers = [c for c in w.active_companies() if c.industry == "K" and c.kind == "企业"] or w.active_companies()
    by_project: dict[str, Any] = {}
    seq = 0
    for prop in properties(w):
        if prop.project is None or prop.buyer is None:
            continue
        row = prop.row
        developer = by_project.setdefault(prop.project, rng.choice(developers))
        price = rng.uniform(7000, 11500) if row["region"] == "341802" else rng.uniform(5000, 8500)
        signed = max(row["registration_date"] - timedelta(days=rng.randint(60, 500)), date(2015, 6, 1))
        seq += 1
        yield {
            "contract_no": f"WQ{signed.year}{seq:08d}", "project_name": prop.project,
            "room": f"{rng.randint(1, 30)}栋{rng.randint(2, 33)}{rng.randint(1, 4):02d}室",
            "buyer_citizen_id": prop.buyer.citizen_id, "buyer_name": prop.buyer.name,
            "developer_uscc": developer.uscc, "developer_name": developer.name, "area_m2": row["area_m2"],
            "unit_price": money(price), "total_price": money(price * row["area_m2"]), "sign_date": signed,
            "status": "已备案" if rng.random() < 0.98 else "已撤销",
        }


@rows_for("lawyer_practice")
def lawyer_practice(w: World) -> Iterator[Row]:
    rng = w.rng("lawyers")
    firms = sorted({f"安徽{a}{b}律师事务所" for a, b in zip(TRADE_CHARS[::2], TRADE_CHARS[1::2], strict=False)})[:24]
    eligible = [p for p in w.living_adults(25) if w.age(p) <= 65 and p.education in ("10", "20")]
    for seq, p in enumerate(sample_share(rng, eligible, 0.012, 5), 1):
        first = rand_date(rng, add_years(p.birth, 24), w.as_of)
        yield {
            "license_no": f"1{p.county[:4]}{first.year}{1 if p.male else 2}{seq:07d}", "citizen_id": p.citizen_id,
            "name": p.name, "sex": p.sex, "law_firm": rng.choice(firms),
            "practice_type": rng.choices(("专职律师", "兼职律师", "公职律师", "公司律师"), (75, 8, 12, 5))[0],
            "first_practice_date": first, "status": rng.choices(("正常", "暂停执业", "注销"), (93, 2, 5))[0],
        }
