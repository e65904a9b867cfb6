"""Build the demo city 示例市 into a database: departments, catalogs, published resources, a
synthetic population and its companies, the records derived from them, and staff accounts.

The whole build is one transaction, so an interrupted build leaves nothing behind but the
standard catalogs and a rerun starts clean. Same seed and sizes, same rows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.catalog.models import Resource
from onceonly.catalog.orgs import ensure_category, get_catalog
from onceonly.catalog.service import create_resource, publish_resource
from onceonly.db import Database
from onceonly.demo.accounts import Account, create_staff
from onceonly.demo.companies import generate_companies
from onceonly.demo.departments import DEPARTMENTS, create_departments
from onceonly.demo.exchange import SYSTEMS, DemoCredential, build_exchange
from onceonly.demo.people import generate_people
from onceonly.demo.progress import Quiet, Stages
from onceonly.demo.resources import ALL_RESOURCES, COMPANY_RESOURCES, PERSON_RESOURCES, categories, generator
from onceonly.demo.world import AS_OF, World
from onceonly.store.service import upsert_rows

TICK = 2000
BUILDER = Actor(user_id=None, username="cli:demo", role="platform_admin", via="cli")


@dataclass(frozen=True)
class DemoOptions:
    seed: int = 2018
    persons: int = 100_000
    companies: int = 20_000


@dataclass
class DemoResult:
    options: DemoOptions
    departments: int = 0
    resources: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    accounts: list[Account] = field(default_factory=list)
    credentials: list[DemoCredential] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def _ticking(rows: Iterable[dict[str, Any]], tick: Callable[[int], None]) -> Iterator[dict[str, Any]]:
    n = 0
    for n, row in enumerate(rows, 1):
        yield row
        if n % TICK == 0:
            tick(TICK)
    tick(n % TICK)


def build_demo(db: Database, options: DemoOptions, stages: Stages | None = None) -> DemoResult:
    """Initialize the database (idempotent) and build the demo city in one transaction."""
    from onceonly.ops.setup import initialize

    stages = stages or Quiet()
    started = time.perf_counter()
    initialize(db)
    result = DemoResult(options)
    world = World(seed=options.seed, as_of=AS_OF)
    with db.session(write=True) as session:
        stages.start("部门 departments", len(DEPARTMENTS))
        world.orgs = create_departments(session, BUILDER)
        stages.advance(len(DEPARTMENTS))
        result.departments = len(world.orgs)

        cats = categories()
        stages.start("目录 catalogs", len(cats))
        for catalog, dept, code, name in cats:
            ensure_category(session, get_catalog(session, catalog or world.org(dept).catalog), code, name)
            stages.advance()

        stages.start("资源 resources", len(ALL_RESOURCES))
        tables: dict[str, Resource] = {}
        for spec in ALL_RESOURCES:
            org = world.org(spec.dept)
            res = create_resource(session, BUILDER, spec.spec(org.code, org.catalog))
            tables[spec.name] = publish_resource(session, BUILDER, res)
            stages.advance(note=spec.title)
        result.resources = len(tables)

        stages.start("人口 persons", options.persons)
        world.persons, world.households = generate_people(options.seed, options.persons, world.as_of)
        for name in PERSON_RESOURCES:
            result.rows[name] = _load(session, world, tables[name], stages.advance)

        stages.start("企业 companies", options.companies)
        world.companies = generate_companies(options.seed, options.companies, world.persons, world.as_of)
        for name in COMPANY_RESOURCES:
            result.rows[name] = _load(session, world, tables[name], stages.advance)

        derived = [r for r in ALL_RESOURCES if r.name not in PERSON_RESOURCES + COMPANY_RESOURCES]
        stages.start("衍生 derived", len(derived))
        for spec in derived:
            result.rows[spec.name] = _load(session, world, tables[spec.name], lambda n: None)
            stages.advance(note=f"{spec.title} {result.rows[spec.name]:,}")

        stages.start("账号 accounts", 1)
        result.accounts = create_staff(session, BUILDER, world.orgs)
        stages.advance()

        stages.start("交换 exchange", len(SYSTEMS))
        result.credentials = build_exchange(session, BUILDER, world.orgs, db.settings.ensure_secret())
        stages.advance(len(SYSTEMS))
    result.seconds = time.perf_counter() - started
    return result


def _load(session: Session, world: World, res: Resource, tick: Callable[[int], None]) -> int:
    rows = generator(res.name)(world)
    return upsert_rows(session, res, _ticking(rows, tick)).inserted
