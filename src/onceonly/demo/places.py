"""Where the demo city's people live: its counties (real GB/T 2260 codes of 宣城市, the city the
platform was designed from), their towns and roads, and the region codes citizen IDs carry —
including the codes in use before the 2000 reorganization (宣城地区 3425xx), which IDs issued
then still carry."""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from onceonly.demo.world import CITY, CITY_CODE, PROVINCE
from onceonly.kit.divisions import current_divisions


@dataclass(frozen=True)
class County:
    code: str
    name: str
    weight: float  # share of the city's registered population
    postcode: str
    towns: tuple[str, ...]
    # (first year, code) pairs: the region code a citizen ID got when issued in that year
    id_codes: tuple[tuple[int, str], ...]


COUNTIES: tuple[County, ...] = (
    County("341802", "宣州区", 0.33, "242000",
           ("澄江街道", "鳌峰街道", "西林街道", "济川街道", "敬亭山街道", "飞彩街道", "向阳街道",
            "水阳镇", "狸桥镇", "孙埠镇", "洪林镇", "寒亭镇", "五星乡"),
           ((0, "342521"), (1987, "342501"), (2000, "341802"))),
    County("341821", "郎溪县", 0.12, "242100", ("建平镇", "十字镇", "梅渚镇", "毕桥镇", "飞鲤镇", "涛城镇"),
           ((0, "342522"), (2000, "341821"))),
    County("341823", "泾县", 0.12, "242500", ("泾川镇", "茂林镇", "榔桥镇", "桃花潭镇", "云岭镇", "丁家桥镇"),
           ((0, "342529"), (2000, "341823"))),
    County("341824", "绩溪县", 0.06, "245300", ("华阳镇", "临溪镇", "长安镇", "上庄镇", "扬溪镇"),
           ((0, "342721"), (1987, "342531"), (2000, "341824"))),
    County("341825", "旌德县", 0.05, "242600", ("旌阳镇", "蔡家桥镇", "三溪镇", "庙首镇", "白地镇"),
           ((0, "342722"), (1987, "342530"), (2000, "341825"))),
    County("341881", "宁国市", 0.14, "242300", ("西津街道", "河沥溪街道", "南山街道", "港口镇", "梅林镇",
                                              "中溪镇", "云梯畲族乡"),
           ((0, "342524"), (1997, "342502"), (2000, "341881"))),
    County("341882", "广德市", 0.18, "242200", ("桃州镇", "新杭镇", "邱村镇", "柏垫镇", "誓节镇", "东亭乡"),
           ((0, "342523"), (2000, "341822"), (2019, "341882"))),
)
BY_CODE = {c.code: c for c in COUNTIES}
COUNTY_CODES = [c.code for c in COUNTIES]
COUNTY_WEIGHTS = [c.weight for c in COUNTIES]

ROADS = (
    "梅园路", "鳌峰路", "叠嶂路", "薰化路", "昭亭路", "宛陵路", "状元路", "府山路", "阳德路", "水阳江大道",
    "敬亭路", "谢朓路", "鳌峰中路", "锦城路", "科技大道", "人民路", "建设路", "解放路", "和平路", "文昌路",
    "中山路", "健康路", "青弋江路", "环城路", "竹峰路", "双桥路", "花园路", "迎宾大道", "翠竹路", "朝阳路",
)
RESIDENTIAL = ("花园", "小区", "新村", "家园", "名苑", "公寓", "华府", "佳苑", "御景", "雅居")


def county_name(code: str) -> str:
    county = BY_CODE.get(code)
    return county.name if county else ""


def id_region(county: County, year: int) -> str:
    """The region code an ID issued in `year` carries for someone registered in `county`."""
    code = county.id_codes[0][1]
    for first, c in county.id_codes:
        if year >= first:
            code = c
    return code


@lru_cache(maxsize=1)
def _elsewhere() -> tuple[list[str], list[str]]:
    """Current county-level codes: elsewhere in 安徽 and elsewhere in China."""
    anhui: list[str] = []
    china: list[str] = []
    for d in current_divisions():
        if d.level != "county" or d.code.startswith(CITY_CODE[:4]):
            continue
        (anhui if d.code.startswith("34") else china).append(d.code)
    return sorted(anhui), sorted(china)


def birthplace_code(rng: random.Random, home: County, year: int) -> str:
    """Region code of a citizen ID: mostly the home county, some from the rest of the city,
    the province and the country."""
    r = rng.random()
    if r < 0.82:
        return id_region(home, year)
    if r < 0.89:
        return id_region(rng.choices(COUNTIES, COUNTY_WEIGHTS)[0], year)
    anhui, china = _elsewhere()
    return rng.choice(anhui if r < 0.95 else china)


def street_address(rng: random.Random, county: County, town: str, urban: bool) -> str:
    road = rng.choice(ROADS)
    if urban:
        estate = f"{rng.choice(ROADS)[:2]}{rng.choice(RESIDENTIAL)}"
        return (f"{PROVINCE}{CITY}{county.name}{town}{road}{rng.randint(1, 399)}号{estate}"
                f"{rng.randint(1, 30)}栋{rng.randint(1, 3)}单元{rng.randint(1, 18)}{rng.randint(1, 4):02d}室")
    village = f"{rng.choice(ROADS)[:2]}村"
    return f"{PROVINCE}{CITY}{county.name}{town}{village}{rng.choice('东南西北中上下')}组{rng.randint(1, 120)}号"


def business_address(rng: random.Random, county: County) -> str:
    town = rng.choice(county.towns)
    return f"{PROVINCE}{CITY}{county.name}{town}{rng.choice(ROADS)}{rng.randint(1, 999)}号"
