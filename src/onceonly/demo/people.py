"""The city's registered population, made household by household so that spouses, parents and
children agree: couples marry before their children are born, children carry their father's
surname, every citizen ID has a real region code, a real birth date, the sex in its 17th digit
and a correct check digit. Names come from Faker's zh_CN lists (weighted surnames) drawn with
our own random stream, which is much faster than a Faker call per person and just as stable."""

from __future__ import annotations

import random
from bisect import bisect
from datetime import date, timedelta
from itertools import accumulate

from faker.providers.person.zh_CN import Provider as FakerNames
from faker.providers.phone_number.zh_CN import Provider as FakerPhones

from onceonly.demo.places import COUNTIES, COUNTY_WEIGHTS, County, birthplace_code, id_region, street_address
from onceonly.demo.world import Household, Person, add_years, age_on, rand_date
from onceonly.kit.identifiers import make_citizen_id

# Ethnic groups besides 汉族 (01) seen in the region: 回族, 畲族 (宁国 has a 畲族乡), 满族, 苗族, 壮族, 土家族
MINORITIES = ("03", "22", "11", "06", "08", "15")
MINORITY_WEIGHTS = (40, 25, 10, 10, 8, 7)


class Names:
    """Chinese names from Faker's zh_CN provider lists, with surname frequencies."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        last = FakerNames.last_names
        self.surnames = list(last)
        self.cum = list(accumulate(float(w) for w in last.values()))
        self.male = list(FakerNames.first_names_male)
        self.female = list(FakerNames.first_names_female)
        self.male_chars = [n for n in self.male if len(n) == 1]
        self.female_chars = [n for n in self.female if len(n) == 1]

    def surname(self) -> str:
        return self.surnames[bisect(self.cum, self.rng.random() * self.cum[-1])]

    def given(self, male: bool) -> str:
        rng = self.rng
        if rng.random() < 0.45:  # many two-character given names are free combinations
            chars = self.male_chars if male else self.female_chars
            return rng.choice(chars) + rng.choice(chars)
        return rng.choice(self.male if male else self.female)


def mobile(rng: random.Random) -> str:
    return f"{rng.choice(FakerPhones.phonenumber_prefixes)}{rng.randrange(10**8):08d}"


class PeopleMaker:
    def __init__(self, seed: int, as_of: date) -> None:
        self.rng = random.Random(f"{seed}/people")
        self.names = Names(self.rng)
        self.as_of = as_of
        self.persons: list[Person] = []
        self.households: list[Household] = []
        self.ids: set[str] = set()

    # --- one person -------------------------------------------------------------------------
    def birth_for_age(self, age: int) -> date:
        start = add_years(self.as_of, -age - 1) + timedelta(days=1)
        return rand_date(self.rng, start, add_years(self.as_of, -age))

    def citizen_id(self, region: str, birth: date, male: bool) -> str:
        while True:
            cid = make_citizen_id(region, birth, self.rng.randrange(500), male)
            if cid not in self.ids:
                self.ids.add(cid)
                return cid

    def education(self, birth: date) -> str | None:
        rng, age = self.rng, age_on(birth, self.as_of)
        if age < 6:
            return None
        if age < 18:
            return "80" if age < 12 else "70" if age < 15 else "60"
        codes: tuple[str, ...]
        weights: tuple[int, ...]
        if birth.year < 1960:
            codes, weights = ("80", "70", "60", "90", "30"), (45, 30, 10, 12, 3)
        elif birth.year < 1980:
            codes, weights = ("70", "60", "80", "40", "30", "20"), (40, 25, 15, 8, 8, 4)
        elif birth.year < 2000:
            codes, weights = ("70", "60", "40", "30", "20", "10"), (25, 20, 12, 20, 20, 3)
        else:
            codes, weights = ("60", "40", "30", "20", "10"), (20, 15, 30, 30, 5)
        return rng.choices(codes, weights)[0]

    def add(self, hh: Household, home: County, surname: str, male: bool, birth: date, relation: str,
            marital: str, ethnic: str, local_birth: float = 0.0) -> Person:
        rng = self.rng
        year = max(birth.year, 1985)  # resident IDs were first issued in 1985
        region = id_region(home, year) if rng.random() < local_birth else birthplace_code(rng, home, year)
        migrant = region not in {code for _, code in home.id_codes}
        if migrant:
            registered = rand_date(rng, max(add_years(birth, 16), date(1985, 1, 1)), self.as_of)
        else:
            registered = min(birth + timedelta(days=rng.randint(3, 90)), self.as_of)
        age = age_on(birth, self.as_of)
        p = Person(
            idx=len(self.persons), citizen_id=self.citizen_id(region, birth, male),
            name=surname + self.names.given(male), sex="1" if male else "2", birth=birth, ethnic=ethnic,
            county=home.code, household=hh.idx, relation=relation, education=self.education(birth),
            marital=marital, mobile=mobile(rng) if age >= 16 and rng.random() < 0.97 else None,
            registered_on=registered,
        )
        if age >= 65 and rng.random() < 0.01 + (age - 65) * 0.002:
            p.deceased_on = rand_date(rng, max(add_years(self.as_of, -3), birth), self.as_of)
        self.persons.append(p)
        hh.members.append(p.idx)
        return p

    def ethnic(self) -> str:
        if self.rng.random() < 0.988:
            return "01"
        return self.rng.choices(MINORITIES, MINORITY_WEIGHTS)[0]

    # --- households -------------------------------------------------------------------------
    def household(self) -> None:
        rng = self.rng
        home = rng.choices(COUNTIES, COUNTY_WEIGHTS)[0]
        town = rng.choice(home.towns)
        urban = town.endswith("街道") or rng.random() < 0.35
        idx = len(self.households)
        hh = Household(idx=idx, number=f"{home.code}{idx + 1:06d}", county=home.code, town=town,
                       address=street_address(rng, home, town, urban), urban=urban)
        self.households.append(hh)
        kind = rng.choices(("single", "couple", "family", "three", "lone_parent"), (16, 26, 38, 12, 8))[0]
        if kind == "single":
            self.single(hh, home)
        elif kind == "couple":
            age = rng.choices((rng.randint(24, 40), rng.randint(45, 64), rng.randint(65, 90)), (25, 35, 40))[0]
            self.couple(hh, home, age, kids=False)
        elif kind == "family":
            self.couple(hh, home, rng.randint(27, 58), kids=True)
        elif kind == "three":
            self.couple(hh, home, rng.randint(30, 55), kids=True, elder=True)
        else:
            self.lone_parent(hh, home)

    def single(self, hh: Household, home: County) -> None:
        rng = self.rng
        age = rng.choices((rng.randint(20, 35), rng.randint(36, 64), rng.randint(65, 95)), (45, 25, 30))[0]
        if age < 30:
            marital = "10" if rng.random() < 0.85 else "40"
        elif age < 65:
            marital = rng.choices(("10", "40", "30"), (35, 45, 20))[0]
        else:
            marital = rng.choices(("30", "40", "10"), (78, 10, 12))[0]
        self.add(hh, home, self.names.surname(), rng.random() < 0.5, self.birth_for_age(age), "户主",
                 marital, self.ethnic())

    def couple(self, hh: Household, home: County, husband_age: int, kids: bool, elder: bool = False) -> None:
        rng = self.rng
        hb = self.birth_for_age(husband_age)
        wb = min(hb + timedelta(days=rng.randint(-700, 2200)), add_years(self.as_of, -21))
        married = max(add_years(hb, rng.randint(22, 30)), add_years(wb, 20)) + timedelta(days=rng.randint(0, 300))
        married = min(married, self.as_of - timedelta(days=30))
        husband_heads = rng.random() < 0.88
        h_surname, ethnic = self.names.surname(), self.ethnic()
        order = ((True, hb, h_surname), (False, wb, self.names.surname()))
        if not husband_heads:
            order = (order[1], order[0])
        first = self.add(hh, home, order[0][2], order[0][0], order[0][1], "户主", "20", ethnic)
        second = self.add(hh, home, order[1][2], order[1][0], order[1][1], "配偶", "20",
                          ethnic if rng.random() < 0.9 else self.ethnic())
        first.spouse, second.spouse = second.idx, first.idx
        first.married_on = second.married_on = married
        husband, wife = (first, second) if first.male else (second, first)
        if kids:
            t = married + timedelta(days=rng.randint(280, 1100))
            for _ in range(rng.choices((1, 2, 3), (48, 44, 8))[0]):
                if t > self.as_of or age_on(wife.birth, t) > 42:
                    break
                if age_on(t, self.as_of) < 28:  # older children have households of their own
                    male = rng.random() < 0.52
                    child = self.add(hh, home, h_surname if rng.random() < 0.95 else self.names.surname(), male,
                                     t, "子" if male else "女", "10", ethnic, local_birth=0.93)
                    child.father, child.mother = husband.idx, wife.idx
                t += timedelta(days=rng.randint(540, 2600))
        if elder:
            father = rng.random() < 0.45
            age = min(age_on(first.birth, self.as_of) + rng.randint(22, 34), 99)
            old = self.add(hh, home, order[0][2] if father else self.names.surname(), father,
                           self.birth_for_age(age), "父亲" if father else "母亲", "30", ethnic)
            if father:
                first.father = old.idx
            else:
                first.mother = old.idx

    def lone_parent(self, hh: Household, home: County) -> None:
        rng = self.rng
        male = rng.random() < 0.3
        surname = self.names.surname()
        parent = self.add(hh, home, surname, male, self.birth_for_age(rng.randint(28, 52)), "户主",
                          rng.choices(("40", "30"), (65, 35))[0], self.ethnic())
        for _ in range(rng.choice((1, 1, 2))):
            t = rand_date(rng, add_years(parent.birth, 22), min(add_years(parent.birth, 40), self.as_of))
            if age_on(t, self.as_of) >= 28:
                continue
            cmale = rng.random() < 0.52
            child = self.add(hh, home, surname if male or rng.random() < 0.3 else self.names.surname(), cmale, t,
                             "子" if cmale else "女", "10", parent.ethnic, local_birth=0.93)
            if male:
                child.father = parent.idx
            else:
                child.mother = parent.idx


def generate_people(seed: int, count: int, as_of: date) -> tuple[list[Person], list[Household]]:
    """Exactly `count` persons in households (the last household may be cut short)."""
    maker = PeopleMaker(seed, as_of)
    while len(maker.persons) < count:
        maker.household()
    persons = maker.persons[:count]
    last = maker.households[-1]
    last.members = [i for i in last.members if i < count]
    if not last.members:
        maker.households.pop()
    for p in persons[-6:]:  # references into the cut-off tail: that relative lives elsewhere
        if p.spouse is not None and p.spouse >= count:
            p.spouse = None
        if p.father is not None and p.father >= count:
            p.father = None
        if p.mother is not None and p.mother >= count:
            p.mother = None
    return persons, maker.households
