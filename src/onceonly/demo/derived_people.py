"""Rows of the resident resources (see specs_people), all drawn from the same persons and
households: a spouse's ID is a real resident's, a pension stops when its holder died."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import accumulate

from faker.providers.bank.zh_CN import Provider as FakerBanks

from onceonly.demo.places import BY_CODE
from onceonly.demo.registry import Row, rows_for
from onceonly.demo.world import CITY, World, add_years, money, rand_date, sample_share

PAYING_BANKS = (*(b for b in FakerBanks.banks if b.startswith("中国") and "人民银行" not in b),
                f"{CITY}农村商业银行")


def place_label(county: str) -> str:
    """宣州区 is the city's own district; the others are counties and county-level cities."""
    return f"{CITY}宣州区" if county == "341802" else BY_CODE[county].name


@dataclass(frozen=True, slots=True)
class Job:
    kind: str  # 企业职工 / 机关事业单位 / 灵活就业
    employer_uscc: str | None
    employer_name: str | None
    start: date
    base: float


def employment(w: World) -> dict[int, Job]:
    """Who works where (insured employment): about 62% of residents of working age."""
    def make() -> dict[int, Job]:
        rng = w.rng("employment")
        employers = [c for c in w.active_companies() if c.kind == "企业"]
        cum = list(accumulate(math.sqrt(c.employees) for c in employers))
        orgs = sorted(w.orgs.values(), key=lambda o: o.key)
        jobs: dict[int, Job] = {}
        for p in w.living_adults():
            age = w.age(p)
            if age > (60 if p.male else 55) or rng.random() > 0.62:
                continue
            kind = rng.choices(("企业职工", "机关事业单位", "灵活就业"), (74, 10, 16))[0]
            start = rand_date(rng, max(add_years(p.birth, 18), date(1995, 1, 1)), w.as_of)
            base = money(min(max(math.exp(rng.gauss(8.7, 0.35)), 4227.0), 25000.0))
            if kind == "企业职工" and employers:
                c = rng.choices(employers, cum_weights=cum)[0]
                jobs[p.idx] = Job(kind, c.uscc, c.name, max(start, c.established), base)
            elif kind == "机关事业单位" and orgs:
                o = rng.choice(orgs)
                jobs[p.idx] = Job(kind, o.code, o.name, start, base)
            else:
                jobs[p.idx] = Job("灵活就业", None, None, start, base)
        return jobs

    return w.memo("employment", make)


@rows_for("population")
def population(w: World) -> Iterator[Row]:
    persons, households = w.persons, w.households
    for p in persons:
        h = households[p.household]
        marital = p.marital
        if p.spouse is not None and not persons[p.spouse].alive and p.alive:
            marital = "30"
        yield {
            "citizen_id": p.citizen_id, "name": p.name, "sex": p.sex, "ethnic": p.ethnic, "birth_date": p.birth,
            "native_region": p.citizen_id[:6], "household_number": h.number, "relation": p.relation,
            "household_region": p.county, "address": h.address, "education": p.education,
            "marital_status": marital, "mobile": p.mobile, "registered_date": p.registered_on,
            "status": "正常" if p.alive else "死亡注销",
            "cancelled_date": min(p.deceased_on + timedelta(days=7), w.as_of) if p.deceased_on else None,
        }


@rows_for("household")
def household(w: World) -> Iterator[Row]:
    for h in w.households:
        head = w.persons[h.head]
        yield {
            "household_number": h.number, "household_type": "家庭户", "head_citizen_id": head.citizen_id,
            "head_name": head.name, "household_region": h.county, "town": h.town, "address": h.address,
            "member_count": sum(1 for i in h.members if w.persons[i].alive), "urban": h.urban,
        }


@rows_for("marriage_registration")
def marriage_registration(w: World) -> Iterator[Row]:
    rng = w.rng("marriage")
    seq: dict[tuple[str, int], int] = {}
    for p in w.persons:
        if p.spouse is None or not p.male or p.married_on is None:
            continue
        wife = w.persons[p.spouse]
        key = (p.county, p.married_on.year)
        seq[key] = seq.get(key, 0) + 1
        reissued = rng.random() < 0.02
        yield {
            "certificate_no": f"J{p.county}-{p.married_on.year}-{seq[key]:06d}",
            "registration_type": "补发结婚证" if reissued else "结婚登记",
            "husband_citizen_id": p.citizen_id, "husband_name": p.name,
            "wife_citizen_id": wife.citizen_id, "wife_name": wife.name,
            "registration_date": p.married_on, "registry_office": f"{place_label(p.county)}民政局婚姻登记处",
        }


@rows_for("death_registration")
def death_registration(w: World) -> Iterator[Row]:
    rng = w.rng("death")
    for p in w.persons:
        if p.deceased_on is None:
            continue
        yield {
            "citizen_id": p.citizen_id, "name": p.name, "sex": p.sex, "birth_date": p.birth,
            "death_date": p.deceased_on,
            "cremation_date": min(p.deceased_on + timedelta(days=rng.randint(1, 3)), w.as_of),
            "funeral_home": f"{CITY}殡仪馆" if p.county == "341802" else f"{BY_CODE[p.county].name}殡仪馆",
            "household_region": p.county,
        }


@rows_for("birth_medical_certificate")
def birth_medical_certificate(w: World) -> Iterator[Row]:
    from onceonly.demo.derived_city import maternity_hospitals

    rng = w.rng("birth_certificate")
    hospitals = maternity_hospitals(w)
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    seen: set[str] = set()
    for p in w.persons:
        if p.birth < date(1996, 1, 1) or (p.mother is None and p.father is None):
            continue
        while True:
            no = f"{letters[(p.birth.year - 1996) // 2 % len(letters)]}34{rng.randrange(10**7):07d}"
            if no not in seen:
                seen.add(no)
                break
        mother = w.persons[p.mother] if p.mother is not None else None
        father = w.persons[p.father] if p.father is not None else None
        hospital = rng.choice(hospitals.get(p.county) or hospitals[""])
        yield {
            "certificate_no": no, "child_name": p.name, "child_sex": p.sex, "birth_date": p.birth,
            "birth_weight": int(min(max(rng.gauss(3300, 420), 1500), 5000)), "birth_place": hospital,
            "mother_citizen_id": mother.citizen_id if mother else None, "mother_name": mother.name if mother else None,
            "father_citizen_id": father.citizen_id if father else None, "father_name": father.name if father else None,
            "issuing_org": hospital, "issue_date": min(p.birth + timedelta(days=rng.randint(1, 5)), w.as_of),
        }


@rows_for("disability_certificate")
def disability_certificate(w: World) -> Iterator[Row]:
    rng = w.rng("disability")
    types = ("视力", "听力", "言语", "肢体", "智力", "精神", "多重")
    for p in w.living():
        age = w.age(p)
        if age < 3 or rng.random() > 0.012 + age * 0.0003:
            continue
        t = rng.choices(range(7), (12, 20, 2, 45, 8, 9, 4))[0]
        level = rng.choices(range(1, 5), (15, 25, 30, 30))[0]
        issued = rand_date(rng, max(add_years(p.birth, 1), date(2008, 1, 1)), w.as_of)
        yield {
            "certificate_no": f"{p.citizen_id}{t + 1}{level}", "citizen_id": p.citizen_id, "name": p.name,
            "sex": p.sex, "disability_type": types[t], "disability_level": "一二三四"[level - 1] + "级",
            "issue_date": issued, "valid_until": add_years(issued, 10),
        }


@rows_for("social_insurance")
def social_insurance(w: World) -> Iterator[Row]:
    rng = w.rng("social_insurance")
    jobs = employment(w)
    for idx in sorted(jobs):
        p, job = w.persons[idx], jobs[idx]
        yield {
            "citizen_id": p.citizen_id, "name": p.name, "insured_type": job.kind,
            "employer_uscc": job.employer_uscc, "employer_name": job.employer_name, "pension": True,
            "unemployment": job.kind != "灵活就业", "injury": job.kind != "灵活就业", "start_date": job.start,
            "contribution_base": job.base,
            "status": rng.choices(("参保缴费", "暂停缴费", "终止参保"), (88, 10, 2))[0],
        }


@rows_for("medical_insurance")
def medical_insurance(w: World) -> Iterator[Row]:
    rng = w.rng("medical_insurance")
    jobs = employment(w)
    for p in w.living():
        if rng.random() > 0.965:
            continue
        job = jobs.get(p.idx)
        if job and job.kind != "灵活就业":
            kind, employer, start, paid = "职工基本医疗保险", job.employer_uscc, job.start, money(job.base * 0.02 * 12)
        else:
            kind, employer, paid = "城乡居民基本医疗保险", None, 400.0
            start = rand_date(rng, max(p.birth, date(2008, 1, 1)), w.as_of)
        yield {
            "citizen_id": p.citizen_id, "name": p.name, "insurance_type": kind, "employer_uscc": employer,
            "start_date": start, "annual_contribution": paid, "insured_year": w.as_of.year,
            "status": rng.choices(("正常参保", "暂停参保", "终止参保"), (95, 4, 1))[0],
        }


@rows_for("retirement_pension")
def retirement_pension(w: World) -> Iterator[Row]:
    rng = w.rng("pension")
    for p in w.persons:
        retire_age = 60 if p.male else 55
        retired = add_years(p.birth, retire_age) + timedelta(days=rng.randint(0, 40))
        if retired > w.as_of or (p.deceased_on and retired > p.deceased_on) or rng.random() > 0.93:
            continue
        kind = rng.choices(("企业职工", "机关事业单位", "城乡居民"), (45, 10, 45))[0]
        if kind == "城乡居民":
            retired = max(retired, add_years(p.birth, 60), date(2009, 10, 1))
            if retired > w.as_of or (p.deceased_on and retired > p.deceased_on):
                continue
            amount = rng.uniform(150, 260)
        else:
            amount = rng.uniform(2000, 4600) if kind == "企业职工" else rng.uniform(4200, 8200)
        yield {
            "citizen_id": p.citizen_id, "name": p.name, "pension_type": kind, "retire_date": retired,
            "monthly_amount": money(amount), "bank": rng.choice(PAYING_BANKS),
            "status": "终止发放" if p.deceased_on else rng.choices(("正常领取", "暂停发放"), (98, 2))[0],
        }


@rows_for("minimum_living_allowance")
def minimum_living_allowance(w: World) -> Iterator[Row]:
    rng = w.rng("dibao")
    eligible = [h for h in w.households if w.persons[h.head].alive]
    chosen = {h.idx for h in sample_share(rng, [h for h in eligible if h.urban], 0.018, 2)}
    chosen |= {h.idx for h in sample_share(rng, [h for h in eligible if not h.urban], 0.032, 2)}
    for h in eligible:
        if h.idx not in chosen:
            continue
        head = w.persons[h.head]
        covered = sum(1 for i in h.members if w.persons[i].alive)
        yield {
            "applicant_citizen_id": head.citizen_id, "applicant_name": head.name, "household_number": h.number,
            "category": "城市低保" if h.urban else "农村低保", "covered_persons": covered,
            "monthly_amount": money(covered * rng.randrange(300, 771, 10)),
            "approved_date": rand_date(rng, date(2016, 1, 1), w.as_of), "household_region": h.county,
            "status": "在保" if rng.random() < 0.9 else "停保",
        }


@rows_for("elderly_allowance")
def elderly_allowance(w: World) -> Iterator[Row]:
    rng = w.rng("elderly")
    for p in w.living():
        age = w.age(p)
        if age < 80:
            continue
        at80 = add_years(p.birth, 80)
        yield {
            "citizen_id": p.citizen_id, "name": p.name, "age": age,
            "monthly_amount": 50.0 if age < 90 else 100.0 if age < 100 else 300.0,
            "start_date": date(at80.year + at80.month // 12, at80.month % 12 + 1, 1),
            "bank": rng.choice(PAYING_BANKS), "household_region": p.county,
        }


@rows_for("unemployment_registration")
def unemployment_registration(w: World) -> Iterator[Row]:
    rng = w.rng("unemployment")
    jobs = employment(w)
    seq = 0
    for p in w.living_adults():
        if p.idx in jobs or w.age(p) > 59 or rng.random() > 0.035:
            continue
        seq += 1
        registered = rand_date(rng, add_years(w.as_of, -3), w.as_of)
        yield {
            "registration_no": f"{p.county}{registered.year}{seq:06d}", "citizen_id": p.citizen_id,
            "name": p.name, "registration_date": registered, "hard_to_employ": rng.random() < 0.2,
            "benefit_monthly": money(rng.uniform(1500, 1850)) if rng.random() < 0.4 else None,
            "status": rng.choices(("失业", "已就业", "注销"), (60, 35, 5))[0],
        }


@rows_for("veterans")
def veterans(w: World) -> Iterator[Row]:
    rng = w.rng("veterans")
    for p in w.living_adults(22):
        if w.age(p) > 80 or rng.random() > (0.045 if p.male else 0.002):
            continue
        enlisted = rand_date(rng, add_years(p.birth, 18), add_years(p.birth, 20))
        years = rng.choices((2, 5, 8, 12, 16, 20), (55, 15, 10, 8, 7, 5))[0]
        discharged = min(add_years(enlisted, years), w.as_of)
        officer = years >= 12
        if officer:
            placement = "退休" if p.birth.year < 1960 else rng.choice(("安排工作", "逐月领取退役金"))
        else:
            placement = rng.choices(("自主就业", "安排工作"), (70, 30))[0]
        yield {
            "citizen_id": p.citizen_id, "name": p.name, "sex": p.sex, "enlistment_date": enlisted,
            "discharge_date": discharged,
            "branch": rng.choices(("陆军", "海军", "空军", "火箭军", "武警部队"), (55, 12, 12, 6, 15))[0],
            "discharge_type": "转业军官" if officer else "退役士兵", "placement": placement,
        }


@rows_for("community_correction")
def community_correction(w: World) -> Iterator[Row]:
    rng = w.rng("correction")
    for p in sample_share(rng, [p for p in w.living_adults() if w.age(p) <= 70], 0.0008, 3):
        start = rand_date(rng, add_years(w.as_of, -3), w.as_of)
        end = start + timedelta(days=30 * rng.randint(6, 60))
        yield {
            "citizen_id": p.citizen_id, "name": p.name,
            "correction_type": rng.choices(("缓刑", "假释", "暂予监外执行", "管制"), (80, 10, 6, 4))[0],
            "start_date": start, "end_date": end,
            "supervising_office": f"{w.households[p.household].town}司法所",
            "status": "在矫" if end > w.as_of else "解矫",
        }

