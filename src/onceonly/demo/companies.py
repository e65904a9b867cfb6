"""The city's market entities: companies, individual businesses and farmers' cooperatives with
valid unified social credit codes (registration authority 9 工商, kind 1/2/3, the registering
county, an organization code body — `MA…` for those registered after the 2015 reform), names
built the way Chinese trade names are, and legal representatives who are real residents."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date

from faker.providers.company.zh_CN import Provider as FakerCompanies

from onceonly.demo.places import BY_CODE, COUNTIES, COUNTY_WEIGHTS, County, business_address
from onceonly.demo.world import CITY, CITY_CODE, Company, Person, add_years, age_on, rand_date
from onceonly.kit.identifiers import make_uscc

USCC_BODY = "0123456789ABCDEFGHJKLMNPQRTUWXY"
SCOPE_TAIL = "（依法须经批准的项目，经相关部门批准后方可开展经营活动）"
TRADE_CHARS = "华信德瑞泰恒鑫兴宏丰源达润嘉诚安盛隆海天金宇博创中新江宣亿和正通鸿祥康明远辰晟锦弘昌荣永顺敬亭宛陵皖峰"


@dataclass(frozen=True)
class Industry:
    code: str  # GB/T 4754-2017 门类
    name: str
    weight: int
    words: tuple[str, ...]  # what the trade name says the company does
    scopes: tuple[str, ...]
    shops: tuple[str, ...]  # individual business name endings


INDUSTRIES: tuple[Industry, ...] = (
    Industry("A", "农、林、牧、渔业", 6, ("农业", "生态农业", "茶业", "农林科技"),
             ("茶叶种植、加工、销售", "水产养殖、销售", "苗木花卉种植、销售", "家禽饲养、销售"),
             ("家庭农场", "养殖场")),
    Industry("C", "制造业", 18, ("机械", "电子", "新材料", "汽车零部件", "竹木制品", "纺织", "食品", "橡塑制品"),
             ("通用机械设备制造、销售", "电子元器件制造", "汽车零部件及配件制造", "竹木制品加工、销售",
              "塑料制品制造；橡胶制品制造", "食品生产；食品销售"), ("加工厂", "制品厂")),
    Industry("E", "建筑业", 8, ("建设工程", "建筑安装", "装饰工程", "市政工程"),
             ("房屋建筑工程施工", "市政公用工程施工", "建筑装饰装修工程施工", "水利水电工程施工"), ("装饰部",)),
    Industry("F", "批发和零售业", 28, ("商贸", "贸易", "百货", "建材", "医药连锁"),
             ("日用百货、五金交电、建材销售", "食品销售；农副产品销售", "服装鞋帽批发零售",
              "药品零售；医疗器械经营"), ("商行", "经营部", "便利店", "超市", "五金店", "服装店")),
    Industry("G", "交通运输、仓储和邮政业", 5, ("物流", "运输", "供应链管理"),
             ("普通货运、货物专用运输（集装箱）", "仓储服务（不含危险化学品）", "道路货物运输（不含危险货物）"),
             ("货运部",)),
    Industry("H", "住宿和餐饮业", 10, ("餐饮管理", "酒店管理", "农家乐"),
             ("餐饮服务", "住宿服务；餐饮服务"), ("小吃店", "面馆", "饭店", "土菜馆", "宾馆")),
    Industry("I", "信息传输、软件和信息技术服务业", 6, ("科技", "信息技术", "网络科技", "软件"),
             ("软件开发；信息系统集成服务", "网络技术服务；数据处理和存储支持服务"), ("电脑店", "手机店")),
    Industry("K", "房地产业", 3, ("房地产开发", "置业", "物业管理"), ("房地产开发经营", "物业管理"), ("房产中介",)),
    Industry("L", "租赁和商务服务业", 7, ("企业管理", "商务咨询", "广告", "人力资源"),
             ("企业管理咨询；市场营销策划", "人力资源服务（不含职业中介活动）", "广告设计、代理、发布"), ("广告部",)),
    Industry("M", "科学研究和技术服务业", 3, ("检测技术", "工程技术", "环保科技"),
             ("工程技术服务（规划管理、勘察、设计、监理除外）", "检验检测服务"), ("技术服务部",)),
    Industry("O", "居民服务、修理和其他服务业", 4, ("家政服务", "汽车服务"),
             ("家政服务；养老服务", "机动车修理和维护"), ("理发店", "汽车修理部", "家电维修部", "洗衣店")),
    Industry("R", "文化、体育和娱乐业", 2, ("文化传媒", "文化旅游", "体育发展"),
             ("组织文化艺术交流活动；体育场地设施经营", "旅游开发项目策划咨询"), ("文体用品店",)),
)
INDUSTRY_WEIGHTS = [i.weight for i in INDUSTRIES]
BY_INDUSTRY = {i.code: i for i in INDUSTRIES}
COOP_PRODUCTS = ("茶叶", "水稻", "蔬菜", "畜禽养殖", "苗木", "山核桃", "宣纸原料", "毛竹", "中药材", "水产")
ORG_TYPES = (
    ("有限责任公司（自然人投资或控股）", "有限公司", 62), ("有限责任公司（自然人独资）", "有限公司", 20),
    ("股份有限公司（非上市、自然人投资或控股）", "股份有限公司", 3), ("个人独资企业", "", 8),
    ("有限责任公司（国有独资）", "有限责任公司", 2), ("有限责任公司（外商投资、非独资）", "有限公司", 1),
    ("有限责任公司（非自然人投资或控股的法人独资）", "有限公司", 4),
)


class CompanyMaker:
    def __init__(self, seed: int, persons: list[Person], as_of: date) -> None:
        self.rng = random.Random(f"{seed}/companies")
        self.as_of = as_of
        self.reps = [p for p in persons if p.alive and 22 <= age_on(p.birth, as_of) <= 72]
        self.names: set[str] = set()
        self.codes: set[str] = set()
        self.prefixes = [p for p in FakerCompanies.company_prefixes if len(p) == 2]

    def trade_name(self) -> str:
        rng = self.rng
        if rng.random() < 0.15:
            return rng.choice(self.prefixes)
        return rng.choice(TRADE_CHARS) + rng.choice(TRADE_CHARS)

    def uscc(self, kind: str, region: str, established: date) -> str:
        rng = self.rng
        while True:
            if established >= date(2015, 10, 1):  # codes given since the 三证合一 reform
                body = "MA" + "".join(rng.choice(USCC_BODY) for _ in range(6))
            else:
                body = f"{rng.randrange(10**8):08d}"
            code = make_uscc("9", kind, region, body)
            if code not in self.codes:
                self.codes.add(code)
                return code

    def established(self) -> date:
        rng = self.rng
        year = 1993 + int((self.as_of.year - 1993 + 1) * rng.random() ** 0.55)
        return rand_date(rng, date(year, 1, 1), min(date(year, 12, 31), self.as_of))

    def name(self, kind: str, county: County, industry: Industry, form: str, established: date) -> str:
        rng = self.rng
        place = county_label(county, established)
        for _ in range(50):
            trade = self.trade_name()
            if kind == "3":
                town = rng.choice(county.towns)
                name = f"{place}{town[:-1]}{trade}{rng.choice(COOP_PRODUCTS)}专业合作社"
            elif kind == "2":
                name = f"{place}{trade}{rng.choice(industry.shops)}"
            else:
                prefix = rng.choices((CITY, place, "安徽"), (55, 33, 12))[0]
                name = f"{prefix}{trade}{rng.choice(industry.words)}{form or '厂'}"
            if name not in self.names:
                self.names.add(name)
                return name
        raise RuntimeError("could not find a free company name")  # pragma: no cover

    def company(self, idx: int) -> Company:
        rng = self.rng
        kind = rng.choices(("1", "2", "3"), (78, 17, 5))[0]
        county = rng.choices(COUNTIES, COUNTY_WEIGHTS)[0]
        industry = BY_INDUSTRY["A"] if kind == "3" else rng.choices(INDUSTRIES, INDUSTRY_WEIGHTS)[0]
        established = self.established()
        if kind == "1":
            org_type, form, _ = rng.choices(ORG_TYPES, [t[2] for t in ORG_TYPES])[0]
            capital = round(math.exp(rng.gauss(5.0, 1.3)), -1 if rng.random() < 0.7 else 0)
            if form == "股份有限公司":
                capital = max(capital, 500.0)
            employees = max(1, int(math.exp(rng.gauss(2.3, 1.1))))
        elif kind == "2":
            org_type, form, capital, employees = "个体工商户", "", float(rng.randint(1, 50)), rng.randint(1, 6)
        else:
            org_type, form = "农民专业合作社", ""
            capital, employees = float(rng.randint(10, 500)), rng.randint(5, 80)
        region = CITY_CODE if kind == "1" and rng.random() < 0.3 else county_code_on(county, established)
        rep = rng.choice(self.reps)
        status, closed = "存续", None
        age_years = self.as_of.year - established.year
        if rng.random() < min(0.04 + age_years * 0.008, 0.3):
            status = rng.choices(("注销", "吊销"), (70, 30))[0]
            closed = rand_date(rng, add_years(established, 1), self.as_of)
            if closed > self.as_of:
                status, closed = "存续", None
        scope = "；".join(rng.sample(industry.scopes, k=min(len(industry.scopes), rng.randint(1, 2)))) + SCOPE_TAIL
        return Company(
            idx=idx, uscc=self.uscc(kind, region, established),
            name=self.name(kind, county, industry, form, established),
            kind={"1": "企业", "2": "个体工商户", "3": "农民专业合作社"}[kind], org_type=org_type,
            industry=industry.code, scope=scope, county=county.code, address=business_address(rng, county),
            legal_rep=rep.idx, capital=max(capital, 1.0), established=established, status=status,
            employees=employees, closed_on=closed,
        )


def county_code_on(county: County, on: date) -> str:
    """The county's code when a code was first given (USCCs date from the 2015 reform)."""
    year = max(on.year, 2016)
    return [code for first, code in county.id_codes if year >= first][-1]


def county_label(county: County, on: date) -> str:
    """How a name registered on `on` calls its county (广德 was a 县 until 2019; 宣州 is a 区 of the city)."""
    if county.code == "341802":
        return f"{CITY}宣州区"
    if county.code == "341882" and on.year < 2019:
        return "广德县"
    return county.name


def generate_companies(seed: int, count: int, persons: list[Person], as_of: date) -> list[Company]:
    maker = CompanyMaker(seed, persons, as_of)
    return [maker.company(i) for i in range(count)]


def authority(c: Company) -> str:
    """The registration authority: the city's bureau for city-registered codes, else the county's."""
    if c.uscc[2:8] == CITY_CODE:
        return f"{CITY}市场监督管理局"
    county = BY_CODE[c.county]
    return f"{CITY}{county.name}市场监督管理局" if county.code == "341802" else f"{county.name}市场监督管理局"
