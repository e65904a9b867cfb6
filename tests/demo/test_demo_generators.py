"""The generators in memory, and determinism of whole builds: same seed, same rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from demo_helpers import content_digest

from onceonly.db import Database
from onceonly.demo.build import DemoOptions, build_demo
from onceonly.demo.companies import generate_companies
from onceonly.demo.departments import DEPARTMENTS, department_code
from onceonly.demo.people import generate_people
from onceonly.demo.registry import GENERATORS
from onceonly.demo.resources import ALL_RESOURCES, BY_NAME, generator
from onceonly.demo.schema import DemoResource
from onceonly.demo.world import AS_OF, Org, World
from onceonly.kit.identifiers import normalize_uscc
from onceonly.settings import load_settings


def small_world(seed: int, persons: int = 1500, companies: int = 300) -> World:
    w = World(seed=seed, as_of=AS_OF)
    w.persons, w.households = generate_people(seed, persons, AS_OF)
    w.companies = generate_companies(seed, companies, w.persons, AS_OF)
    w.orgs = {d.key: Org(d.key, department_code(i, d), d.name, d.short_name, f"3{i + 1:02d}")
              for i, d in enumerate(DEPARTMENTS)}
    return w


def test_every_resource_has_exactly_one_generator() -> None:
    assert len(ALL_RESOURCES) >= 40
    assert len(BY_NAME) == len(ALL_RESOURCES), "resource names are unique"
    assert set(GENERATORS) == set(BY_NAME)


def test_department_codes_are_valid_and_fixed() -> None:
    codes = [department_code(i, d) for i, d in enumerate(DEPARTMENTS)]
    assert len(set(codes)) == len(codes) >= 23
    assert all(normalize_uscc(c) == c for c in codes)


def test_people_come_in_the_requested_number() -> None:
    for n in (200, 999, 1500):
        persons, households = generate_people(3, n, AS_OF)
        assert len(persons) == n
        assert sum(len(h.members) for h in households) == n
        assert all(p.spouse is None or p.spouse < n for p in persons)


@pytest.mark.parametrize("spec", ALL_RESOURCES, ids=lambda r: r.name)
def test_rows_match_the_schema_and_keys_are_unique(spec: DemoResource) -> None:
    w = _world()
    rows = list(generator(spec.name)(w))
    names = set(spec.field_names)
    keys = set()
    for row in rows:
        assert set(row) == names, f"{spec.name}: {set(row) ^ names}"
        key = tuple(row[k] for k in spec.key)
        assert None not in key
        keys.add(key)
    assert len(keys) == len(rows), f"{spec.name}: repeated keys"


_cache: dict[int, World] = {}


def _world() -> World:
    if 5 not in _cache:
        _cache[5] = small_world(5)
    return _cache[5]


def test_generators_are_deterministic_in_memory() -> None:
    a, b = small_world(9, 800, 120), small_world(9, 800, 120)
    for name in ("population", "social_insurance", "administrative_penalty", "air_quality_daily"):
        assert list(generator(name)(a)) == list(generator(name)(b))
    c = small_world(10, 800, 120)
    assert list(generator("population")(a)) != list(generator("population")(c))


def _digest(home: Path, seed: int) -> dict[str, str]:
    db = Database(load_settings(home=home))
    try:
        build_demo(db, DemoOptions(seed=seed, persons=600, companies=80))
        with db.session() as session:
            return content_digest(session)
    finally:
        db.dispose()


def test_same_seed_builds_the_same_data(tmp_path: Path) -> None:
    first = _digest(tmp_path / "a", 11)
    second = _digest(tmp_path / "b", 11)
    assert first == second
    assert len(first) == len(ALL_RESOURCES)
    other = _digest(tmp_path / "c", 12)
    assert other["population"] != first["population"]
    assert other["enterprise_registration"] != first["enterprise_registration"]
