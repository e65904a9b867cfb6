"""Rows of the city resources (see specs_city). Statistics are computed from the demo's own
people (the population table and the statistics agree), and the city's economy is scaled to
them. Place names are the real towns of the counties; the figures are synthetic."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from onceonly.demo.companies import TRADE_CHARS
from onceonly.demo.places import BY_CODE, COUNTIES, County, business_address
from onceonly.demo.registry import Row, rows_for
from onceonly.demo.world import CITY, CITY_CODE, World, add_years, money, rand_date
from onceonly.kit.identifiers import make_uscc

AREA_CODE = "0563"


def phone(rng: Any) -> str:
    return f"{AREA_CODE}-{rng.randint(2000000, 8999999)}"


def label(county: County) -> str:
    return CITY if county.code == "341802" else county.name


def stem(town: str) -> str:
    for suffix in ("街道", "畲族乡", "镇", "乡"):
        if town.endswith(suffix):
            return town[: -len(suffix)]
    return town


def schools(w: World) -> list[Row]:
    """The schools (without pupil counts, which come from the pupils placed in them)."""
    def make() -> list[Row]:
        rng = w.rng("schools")
        pop = Counter(p.county for p in w.persons)
        out: list[Row] = []
        for county in COUNTIES:
            n = 0
            plan = [("小学", max(2, pop[county.code] // 2500)), ("初中", max(1, pop[county.code] // 6000)),
                    ("高中", max(1, pop[county.code] // 15000))]
            names: set[str] = set()
            for level, count in plan:
                for i in range(count):
                    n += 1
                    town = county.towns[i % len(county.towns)]
                    if level == "小学":
                        name = f"{label(county)}{stem(town)}{'中心' if i < len(county.towns) else '第二'}小学"
                    elif level == "初中":
                        name = f"{label(county)}{stem(town)}初级中学" if i else f"{label(county)}实验中学"
                    else:
                        name = f"{label(county)}第{'一二三四五六七八九十'[i % 10]}中学"
                    if name in names:
                        name = f"{name[:-2]}{n}号{name[-2:]}"
                    names.add(name)
                    out.append({
                        "school_code": f"21{county.code[2:]}{n:04d}", "name": name, "level": level,
                        "nature": "民办" if rng.random() < 0.08 else "公办", "region": county.code,
                        "address": business_address(rng, county), "phone": phone(rng),
                        "founded": rng.randint(1905, 2015),
                    })
        return out

    return w.memo("schools", make)


@rows_for("schools")
def school_rows(w: World) -> Iterator[Row]:
    from onceonly.demo.derived_services import students

    rng = w.rng("school_staff")
    pupils = Counter(s["school_code"] for s in students(w))
    for s in schools(w):
        n = pupils.get(s["school_code"], 0)
        yield {**s, "students": n, "teachers": max(8, round(n / rng.uniform(12, 16)))}


def medical_institutions(w: World) -> list[Row]:
    def make() -> list[Row]:
        rng = w.rng("medical")
        out: list[Row] = []

        def add(name: str, category: str, grade: str, public: bool, beds: int, county: County) -> None:
            n = len(out) + 1
            code = (make_uscc("1", "2", county.code, f"4{n:07d}") if public
                    else make_uscc("5", "2", county.code, f"MJ{n:06d}"))
            rep = rng.choice(w.living_adults(35))
            out.append({
                "registration_no": f"PDY{county.code}{n:05d}", "name": name, "uscc": code, "category": category,
                "grade": grade, "ownership": "公立" if public else "民营", "beds": beds, "region": county.code,
                "address": business_address(rng, county), "legal_rep_name": rep.name,
                "valid_until": add_years(rand_date(rng, add_years(w.as_of, -5), w.as_of), 5),
            })

        city = BY_CODE["341802"]
        add(f"{CITY}人民医院", "综合医院", "三级甲等", True, 1500, city)
        add(f"{CITY}中心医院", "综合医院", "三级乙等", True, 900, city)
        add(f"{CITY}中医院", "中医医院", "三级甲等", True, 700, city)
        add(f"{CITY}妇幼保健院", "妇幼保健院", "二级甲等", True, 300, city)
        for county in COUNTIES:
            if county.code != "341802":
                add(f"{county.name}人民医院", "综合医院", "二级甲等", True, rng.randrange(300, 700, 10), county)
                add(f"{county.name}中医院", "中医医院", "二级甲等", True, rng.randrange(150, 400, 10), county)
            for town in county.towns:
                if town.endswith("街道"):
                    add(f"{label(county)}{stem(town)}社区卫生服务中心", "社区卫生服务中心", "一级", True,
                        rng.randrange(0, 40, 10), county)
                else:
                    add(f"{label(county)}{town}卫生院", "乡镇卫生院", "一级", True, rng.randrange(20, 80, 10), county)
        for _ in range(max(5, len(w.persons) // 2500)):
            county = rng.choice(COUNTIES)
            trade = rng.choice(TRADE_CHARS) + rng.choice(TRADE_CHARS)
            add(f"{label(county)}{trade}{rng.choice(('口腔', '中医', '内科'))}诊所", "诊所", "未定级", False, 0, county)
        return out

    return w.memo("medical_institutions", make)


def maternity_hospitals(w: World) -> dict[str, list[str]]:
    """Where babies are born, by county ("" holds all of them)."""
    out: dict[str, list[str]] = {"": []}
    for m in medical_institutions(w):
        if m["category"] in ("综合医院", "妇幼保健院", "中医医院"):
            out.setdefault(m["region"], []).append(m["name"])
            out[""].append(m["name"])
    return out


@rows_for("medical_institution")
def medical_institution(w: World) -> Iterator[Row]:
    yield from medical_institutions(w)


# HJ 633-2012 breakpoints: IAQI levels and the concentrations they correspond to
IAQI = (0, 50, 100, 150, 200, 300, 400, 500)
BREAKS = {
    "PM2.5": (0, 35, 75, 115, 150, 250, 350, 500), "PM10": (0, 50, 150, 250, 350, 420, 500, 600),
    "O3": (0, 100, 160, 215, 265, 800), "NO2": (0, 40, 80, 180, 280, 565, 750, 940),
}


def iaqi(pollutant: str, value: float) -> int:
    bp = BREAKS[pollutant]
    for i in range(1, len(bp)):
        if value <= bp[i]:
            lo, hi = bp[i - 1], bp[i]
            return math.ceil(IAQI[i - 1] + (IAQI[i] - IAQI[i - 1]) * (value - lo) / (hi - lo))
    return 500


@rows_for("air_quality_daily")
def air_quality_daily(w: World) -> Iterator[Row]:
    rng = w.rng("air")
    stations = [(f"{c.code}01", f"{label(c)}环境监测站", c.code)
                for c in COUNTIES] + [("34180202", "敬亭山", "341802")]
    year = w.as_of.year
    for code, name, county in stations:
        d = date(year, 1, 1)
        while d <= w.as_of:
            winter = math.cos((d.timetuple().tm_yday - 15) / 365 * 2 * math.pi)  # 1 in January, -1 in July
            pm25 = max(5.0, round(rng.lognormvariate(math.log(32 + 18 * winter), 0.35), 0))
            pm10 = round(pm25 * rng.uniform(1.4, 1.9), 0)
            o3 = round(max(20.0, rng.gauss(110 - 45 * winter, 25)), 0)
            no2 = round(max(5.0, rng.gauss(24 + 8 * winter, 6)), 0)
            scores = {"PM2.5": iaqi("PM2.5", pm25), "PM10": iaqi("PM10", pm10), "O3": iaqi("O3", o3),
                      "NO2": iaqi("NO2", no2)}
            primary = max(scores, key=lambda k: scores[k])
            aqi = scores[primary]
            level = 0 if aqi <= 50 else 1 if aqi <= 100 else 2 if aqi <= 150 else 3 if aqi <= 200 else \
                4 if aqi <= 300 else 5
            yield {
                "station_code": code, "monitor_date": d, "station_name": name, "region": county, "aqi": aqi,
                "pm25": pm25, "pm10": pm10, "so2": round(rng.uniform(4, 12), 0), "no2": no2, "o3_8h": o3,
                "co": round(rng.uniform(0.4, 1.2), 1), "primary_pollutant": primary if aqi > 50 else None,
                "quality_level": ("优", "良", "轻度污染", "中度污染", "重度污染", "严重污染")[level],
            }
            d += timedelta(days=1)


@rows_for("emergency_shelter")
def emergency_shelter(w: World) -> Iterator[Row]:
    rng = w.rng("shelters")
    places = ("公园", "广场", "体育场", "中学操场", "文化中心")
    for county in COUNTIES:
        for n, town in enumerate(county.towns[: rng.randint(3, 6)], 1):
            indoor = rng.random() < 0.3
            area = round(rng.uniform(800, 4000) if indoor else rng.uniform(3000, 60000), 0)
            yield {
                "shelter_code": f"BNCS{county.code}{n:03d}", "name": f"{stem(town)}{rng.choice(places)}应急避难场所",
                "shelter_type": "室内" if indoor else "室外", "region": county.code,
                "address": business_address(rng, county), "area_m2": area, "capacity": int(area / 1.5),
                "facilities": "应急供水、应急厕所、应急照明、医疗救护点"
                + ("、应急物资储备库" if rng.random() < 0.4 else ""),
                "manager": f"{town}{'办事处' if town.endswith('街道') else '人民政府'}", "phone": phone(rng),
            }


@rows_for("community")
def community(w: World) -> Iterator[Row]:
    rng = w.rng("communities")
    plan: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for county in COUNTIES:
        for t, town in enumerate(county.towns, 1):
            urban = town.endswith("街道")
            units = []
            for n in range(1, rng.randint(3, 8) + 1):
                residents = urban or n == 1
                number = n if residents else 200 + n
                kind = "社区居委会" if residents else "村委会"
                name = f"{rng.choice(TRADE_CHARS)}{rng.choice(TRADE_CHARS)}{'社区' if residents else '村'}"
                units.append((f"{county.code}{t:03d}{number:03d}", name, kind))
            plan[(county.code, town)] = units
    households: Counter[str] = Counter()
    people: Counter[str] = Counter()
    for h in w.households:
        units = plan[(h.county, h.town)]
        code = units[h.idx % len(units)][0]
        households[code] += 1
        people[code] += sum(1 for i in h.members if w.persons[i].alive)
    for (county_code, town), units in plan.items():
        county = BY_CODE[county_code]
        for code, name, kind in units:
            yield {
                "community_code": code, "name": f"{name}{'居委会' if kind == '社区居委会' else '村委会'}",
                "community_type": kind, "town": town, "region": county_code, "households": households[code],
                "registered_population": people[code], "grid_count": max(1, households[code] // 150),
                "service_address": business_address(rng, county), "phone": phone(rng),
            }


COMMODITIES = (
    ("粳米", "元/500克", 2.9), ("面粉", "元/500克", 2.6), ("菜籽油", "元/5升", 85.0),
    ("猪肉（精瘦肉）", "元/500克", 15.5),
    ("牛肉", "元/500克", 38.0), ("白条鸡", "元/500克", 12.0), ("鸡蛋", "元/500克", 5.2), ("鲫鱼", "元/500克", 11.0),
    ("大白菜", "元/500克", 1.4), ("青椒", "元/500克", 3.5), ("西红柿", "元/500克", 3.8), ("黄瓜", "元/500克", 3.0),
    ("土豆", "元/500克", 2.0), ("苹果", "元/500克", 6.0), ("香蕉", "元/500克", 4.0),
)


@rows_for("price_monitoring")
def price_monitoring(w: World) -> Iterator[Row]:
    rng = w.rng("prices")
    first = date(w.as_of.year, 1, 1)
    first += timedelta(days=(7 - first.weekday()) % 7)  # Mondays
    for i, (name, unit, base) in enumerate(COMMODITIES, 1):
        price, d = base, first
        while d <= w.as_of:
            new = max(base * 0.6, price * (1 + rng.gauss(0, 0.025)))
            yield {
                "commodity_code": f"P{i:02d}", "monitor_date": d, "commodity": name, "unit": unit,
                "price": money(new), "change_pct": round((new / price - 1) * 100, 2),
                "market": f"{CITY}城区农贸市场（均价）",
            }
            price, d = new, d + timedelta(days=7)


@rows_for("economic_indicators")
def economic_indicators(w: World) -> Iterator[Row]:
    rng = w.rng("economy")
    year = w.as_of.year
    people = len(w.persons)
    gdp_year = people * rng.uniform(7.5, 8.5) / 10000  # 亿元: about 8万元 per head
    income_urban, income_rural = rng.uniform(48000, 52000), rng.uniform(23000, 26000)

    def row(code: str, period: str, name: str, value: float, unit: str, yoy: float | None, released: date) -> Row:
        return {"indicator_code": code, "period": period, "indicator": name, "value": round(value, 2), "unit": unit,
                "yoy_pct": round(yoy, 1) if yoy is not None else None, "released_date": released}

    for m in range(1, 13):
        released = date(year + (m == 12), m % 12 + 1, 20)
        if released > w.as_of + timedelta(days=30):
            break
        p, share = f"{year}-{m:02d}", m / 12
        yield row("E02", p, "规模以上工业增加值增速", rng.uniform(7.0, 9.5), "%", None, released)
        yield row("E03", p, "固定资产投资增速", rng.uniform(3.0, 8.0), "%", None, released)
        yield row("E04", p, "社会消费品零售总额（累计）", gdp_year * 0.42 * share, "亿元", rng.uniform(4.5, 7.0),
                  released)
        yield row("E05", p, "一般公共预算收入（累计）", gdp_year * 0.085 * share, "亿元", rng.uniform(1.0, 6.0),
                  released)
        yield row("E08", p, "居民消费价格指数（上年同月=100）", rng.uniform(99.5, 101.2), "", None, released)
        if m % 3 == 0:
            q, released_q = f"{year}-Q{m // 3}", date(year + (m == 12), m % 12 + 1, 28)
            yield row("E01", q, "地区生产总值（累计）", gdp_year * share, "亿元", rng.uniform(5.0, 6.5), released_q)
            yield row("E06", q, "城镇常住居民人均可支配收入（累计）", income_urban * share, "元", rng.uniform(4.5, 5.5),
                      released_q)
            yield row("E07", q, "农村常住居民人均可支配收入（累计）", income_rural * share, "元", rng.uniform(6.0, 7.5),
                      released_q)


@rows_for("population_statistics")
def population_statistics(w: World) -> Iterator[Row]:
    year = w.as_of.year
    stats: dict[str, Counter[str]] = {c.code: Counter() for c in COUNTIES}
    stats[CITY_CODE] = Counter()
    for p in w.persons:
        for key in (p.county, CITY_CODE):
            s = stats[key]
            if p.deceased_on and p.deceased_on.year == year:
                s["deaths"] += 1
            if not p.alive:
                continue
            age = w.age(p)
            s["population"] += 1
            s["male" if p.male else "female"] += 1
            s["age_0_17" if age < 18 else "age_18_59" if age < 60 else "age_60_plus"] += 1
            s["births"] += p.birth.year == year
    for h in w.households:
        stats[h.county]["households"] += 1
        stats[CITY_CODE]["households"] += 1
    for code, s in stats.items():
        yield {"region": code, "year": year, **{k: s[k] for k in (
            "population", "male", "female", "age_0_17", "age_18_59", "age_60_plus", "households", "births", "deaths")}}


@rows_for("land_supply")
def land_supply(w: World) -> Iterator[Row]:
    rng = w.rng("land")
    active = [c for c in w.active_companies() if c.kind == "企业"]
    developers = [c for c in active if c.industry == "K"] or active
    makers = [c for c in active if c.industry == "C"] or active
    orgs = sorted(w.orgs.values(), key=lambda o: o.key)
    for seq in range(1, max(10, len(w.companies) // 60) + 1):
        use = rng.choices(("住宅用地", "工业用地", "商服用地", "公共管理与公共服务用地"), (35, 40, 15, 10))[0]
        county = rng.choice(COUNTIES)
        signed = rand_date(rng, add_years(w.as_of, -5), w.as_of)
        area = round(rng.uniform(0.5, 12.0), 4)
        if use == "公共管理与公共服务用地":
            org = rng.choice(orgs)
            user, code, method, price = org.name, org.code, "划拨", 0.0
        else:
            c = rng.choice(developers if use in ("住宅用地", "商服用地") else makers)
            user, code = c.name, c.uscc
            method = rng.choices(("挂牌出让", "拍卖出让", "协议出让"), (75, 15, 10))[0]
            per_ha = {"住宅用地": (800, 3000), "商服用地": (500, 2000), "工业用地": (60, 150)}[use]
            price = money(area * rng.uniform(*per_ha))
        yield {
            "supply_no": f"{county.code}{signed.year}B{seq:05d}", "project_name": f"{stem(rng.choice(county.towns))}"
            f"{rng.choice(TRADE_CHARS)}{use[:2]}项目", "region": county.code,
            "location": business_address(rng, county), "land_use": use, "area_ha": area, "method": method,
            "price": price, "land_user": user, "land_user_uscc": code, "contract_date": signed,
            "plot_ratio": round(rng.uniform(1.2, 3.0) if use == "住宅用地" else rng.uniform(0.8, 2.0), 1),
        }


@rows_for("bus_routes")
def bus_routes(w: World) -> Iterator[Row]:
    rng = w.rng("bus")
    landmarks = ("火车站", "汽车站", "人民医院", "高铁站", "体育中心", "经济开发区", "市民中心", "职教中心")
    for county in COUNTIES:
        city = county.code == "341802"
        operator = f"{CITY}公共交通集团有限公司" if city else f"{county.name}公共交通有限公司"
        for n in range(1, (30 if city else rng.randint(6, 10)) + 1):
            stops = rng.randint(12, 40)
            yield {
                "route_code": f"{county.code}{n:03d}", "route_name": f"{'' if city else county.name}{n}路",
                "region": county.code, "start_stop": rng.choice(landmarks),
                "end_stop": f"{stem(rng.choice(county.towns))}{rng.choice(('站', '公交首末站', '客运站'))}",
                "stops": stops, "length_km": round(stops * rng.uniform(0.6, 1.1), 1),
                "first_bus": f"0{rng.randint(5, 6)}:{rng.choice(('00', '20', '30'))}",
                "last_bus": f"{rng.randint(18, 21)}:{rng.choice(('00', '30'))}", "fare": 1.0 if city else 2.0,
                "operator": operator,
            }


SIGHTS = (
    ("敬亭山风景区", "4A", "341802", 50.0), ("桃花潭风景区", "4A", "341823", 90.0),
    ("中国宣纸文化园", "4A", "341823", 60.0),
    ("云岭新四军军部旧址", "4A", "341823", 0.0), ("龙川景区", "4A", "341824", 75.0),
    ("太极洞风景区", "4A", "341882", 85.0),
    ("恩龙世界木屋村", "4A", "341881", 80.0), ("江村景区", "4A", "341825", 60.0), ("查济古村落", "4A", "341823", 70.0),
    ("青龙湾生态旅游区", "3A", "341881", 40.0), ("笄山竹海", "3A", "341882", 30.0),
    ("水阳江湿地公园", "3A", "341802", 0.0),
    ("上庄古村落", "3A", "341824", 40.0), ("梅渚古镇", "3A", "341821", 0.0),
)


@rows_for("scenic_spots")
def scenic_spots(w: World) -> Iterator[Row]:
    rng = w.rng("sights")
    for n, (name, grade, county, price) in enumerate(SIGHTS, 1):
        yield {
            "spot_code": f"JQ{county}{n:02d}", "name": name, "grade": grade, "region": county,
            "address": business_address(rng, BY_CODE[county]), "open_hours": "08:00-17:30",
            "ticket_price": price, "visitors": int(rng.uniform(5, 120) * 10000), "phone": phone(rng),
        }
