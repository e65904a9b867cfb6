"""Every resource of the demo city, in build order, with the function that makes its rows."""

from __future__ import annotations

from onceonly.demo import (  # noqa: F401  (each module registers its generators)
    derived_city,
    derived_credit,
    derived_entities,
    derived_people,
    derived_services,
)
from onceonly.demo.registry import GENERATORS, Generator
from onceonly.demo.schema import DemoResource
from onceonly.demo.specs_city import RESOURCES as CITY_RESOURCES
from onceonly.demo.specs_entities import RESOURCES as ENTITY_RESOURCES
from onceonly.demo.specs_people import RESOURCES as PEOPLE_RESOURCES
from onceonly.demo.specs_services import RESOURCES as SERVICE_RESOURCES

ALL_RESOURCES: tuple[DemoResource, ...] = PEOPLE_RESOURCES + SERVICE_RESOURCES + ENTITY_RESOURCES + CITY_RESOURCES
BY_NAME = {r.name: r for r in ALL_RESOURCES}
# Loaded in their own progress stages; everything else is "derived data".
PERSON_RESOURCES = ("population",)
COMPANY_RESOURCES = ("enterprise_registration",)


def generator(name: str) -> Generator:
    return GENERATORS[name]


def categories() -> list[tuple[str | None, str, str, str]]:
    """(catalog code or None for the department's own, department key, category code, name), deduplicated."""
    seen: dict[tuple[str | None, str, str], str] = {}
    for r in ALL_RESOURCES:
        key = (r.catalog, r.dept if r.catalog is None else "", r.category[0])
        seen.setdefault(key, r.category[1])
    return [(catalog, dept, code, name) for (catalog, dept, code), name in seen.items()]
