"""The demo city's people, households and companies, held in memory while the demo is built.

Every generator draws from its own named random stream (`World.rng("stream")`), so the data
of one resource does not change when another resource's generator changes or runs in another
order: same seed, same rows.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, TypeVar

CITY = "示例市"
CITY_CODE = "341800"  # a real prefecture code (宣城市) so region codes and IDs ring true
PROVINCE = "安徽省"
# The data describes the city as of this day, whatever day the demo is built: same seed, same rows.
AS_OF = date(2025, 12, 31)

T = TypeVar("T")


@dataclass(slots=True)
class Person:
    idx: int
    citizen_id: str
    name: str
    sex: str  # GB/T 2261.1: 1 male, 2 female (agrees with the ID's 17th digit)
    birth: date
    ethnic: str  # GB 3304
    county: str  # household registration county (GB/T 2260, current)
    household: int
    relation: str  # 与户主关系
    education: str | None  # GB/T 4658 文化程度 code
    marital: str  # GB/T 2261.2 婚姻状况: 10 未婚 20 已婚 30 丧偶 40 离婚
    mobile: str | None
    registered_on: date
    spouse: int | None = None
    married_on: date | None = None
    father: int | None = None
    mother: int | None = None
    deceased_on: date | None = None

    @property
    def male(self) -> bool:
        return self.sex == "1"

    @property
    def alive(self) -> bool:
        return self.deceased_on is None


@dataclass(slots=True)
class Household:
    idx: int
    number: str  # 户号
    county: str
    town: str
    address: str
    urban: bool
    members: list[int] = field(default_factory=list)

    @property
    def head(self) -> int:
        return self.members[0]


@dataclass(slots=True)
class Company:
    idx: int
    uscc: str
    name: str
    kind: str  # 企业 / 个体工商户 / 农民专业合作社
    org_type: str  # 企业类型
    industry: str  # GB/T 4754 门类
    scope: str
    county: str
    address: str
    legal_rep: int  # person index
    capital: float  # 注册资本（万元）
    established: date
    status: str  # 存续 / 注销 / 吊销
    employees: int
    closed_on: date | None = None

    @property
    def active(self) -> bool:
        return self.status == "存续"


@dataclass(frozen=True, slots=True)
class Org:
    key: str
    code: str
    name: str
    short_name: str
    catalog: str = ""  # its department catalog code, known once created


@dataclass
class World:
    seed: int
    as_of: date = AS_OF
    persons: list[Person] = field(default_factory=list)
    households: list[Household] = field(default_factory=list)
    companies: list[Company] = field(default_factory=list)
    orgs: dict[str, Org] = field(default_factory=dict)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def rng(self, stream: str) -> random.Random:
        """A random stream of its own per generator; str seeds are stable across processes."""
        return random.Random(f"{self.seed}/{stream}")

    def memo(self, key: str, make: Callable[[], T]) -> T:
        """Compute once what several resources share (e.g. licenses feeding 双公示)."""
        if key not in self._memo:
            self._memo[key] = make()
        value: T = self._memo[key]
        return value

    def age(self, p: Person, on: date | None = None) -> int:
        return age_on(p.birth, on or self.as_of)

    def living_adults(self, min_age: int = 18) -> list[Person]:
        return self.memo(f"adults{min_age}", lambda: [
            p for p in self.persons if p.alive and self.age(p) >= min_age])

    def living(self) -> list[Person]:
        return self.memo("living", lambda: [p for p in self.persons if p.alive])

    def active_companies(self) -> list[Company]:
        return self.memo("active_companies", lambda: [c for c in self.companies if c.active])

    def org(self, key: str) -> Org:
        return self.orgs[key]


def age_on(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def rand_date(rng: random.Random, start: date, end: date) -> date:
    """A uniform date in [start, end] (end before start gives start)."""
    span = (end - start).days
    return start + timedelta(days=rng.randint(0, span)) if span > 0 else start


def sample_share(rng: random.Random, items: list[T], share: float, minimum: int) -> list[T]:
    """About `share` of the items (at least `minimum` where there are that many), in their order:
    rare records still show up in a small demo."""
    n = min(len(items), max(minimum, round(share * len(items))))
    return [items[i] for i in sorted(rng.sample(range(len(items)), n))]


def money(value: float) -> float:
    return round(value, 2)
