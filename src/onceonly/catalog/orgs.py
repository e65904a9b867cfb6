"""Organizations (departments) and the catalog tree (catalogs and their categories)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.accounts.service import record
from onceonly.catalog import repository as repo
from onceonly.catalog.models import Catalog, Category, Organization
from onceonly.catalog.schemas import CatalogIn, CatalogOut, CategoryIn, CategoryOut, OrgIn, OrgOut
from onceonly.catalog.vocab import BASIC_CATALOGS, KIND_DIGIT, THEME_CATALOGS
from onceonly.errors import Conflict, NotFound, ValidationFailed
from onceonly.kit.divisions import all_divisions
from onceonly.kit.identifiers import IdentifierError, normalize_uscc

DEFAULT_DEPARTMENT_CATEGORY = ("001", "业务数据")


def add_org(session: Session, actor: Actor, data: OrgIn) -> Organization:
    """Register a department; it gets a 2-digit number and its own department catalog (3NN)."""
    actor.require("org.manage")
    try:
        code = normalize_uscc(data.code)
    except IdentifierError as exc:
        raise ValidationFailed(f"code: {exc}", field="code") from None
    if repo.org_by_code(session, code):
        raise Conflict(f"organization {code} already exists", field="code")
    parent = None
    if data.parent:
        parent = repo.org_by_code(session, data.parent.strip().upper())
        if parent is None:
            raise ValidationFailed(f"parent organization {data.parent} not found", field="parent")
    if data.region and (data.region not in all_divisions() or not all_divisions()[data.region].current):
        raise ValidationFailed(f"region {data.region} is not a current GB/T 2260 code", field="region")
    number = repo.next_org_number(session)
    if number > 99:
        raise Conflict("department catalog numbers (项) are exhausted at 99", field="code")
    org = Organization(code=code, name=data.name.strip(), short_name=data.short_name, parent=parent,
                       region=data.region, number=number)
    session.add(org)
    session.flush()
    catalog = Catalog(kind="department", code=f"3{number:02d}", name=f"{org.name}信息资源目录", org_id=org.id)
    session.add(catalog)
    session.flush()
    session.add(Category(catalog_id=catalog.id, code=DEFAULT_DEPARTMENT_CATEGORY[0],
                         name=DEFAULT_DEPARTMENT_CATEGORY[1]))
    record(session, actor, "org.create", f"org:{code}", {"name": org.name})
    return org


def get_org(session: Session, code: str) -> Organization:
    org = repo.org_by_code(session, code.strip().upper())
    if org is None:
        raise NotFound(f"organization {code} not found", field="org")
    return org


def org_out(org: Organization) -> OrgOut:
    return OrgOut(id=org.id, code=org.code, name=org.name, short_name=org.short_name,
                  parent_code=org.parent.code if org.parent else None, region=org.region, number=org.number)


def ensure_standard_catalogs(session: Session) -> None:
    """The guide's five basic catalogs and the theme areas exist in every installation."""
    for kind, items in (("basic", BASIC_CATALOGS), ("theme", THEME_CATALOGS)):
        for item, name in items.items():
            code = KIND_DIGIT[kind] + item
            if repo.catalog_by_code(session, code) is None:
                cat = Catalog(kind=kind, code=code, name=name)
                session.add(cat)
                session.flush()
                session.add(Category(catalog_id=cat.id, code="001", name="综合"))
    session.flush()


def create_catalog(session: Session, actor: Actor, data: CatalogIn) -> Catalog:
    actor.require("catalog.manage")
    code = KIND_DIGIT[data.kind] + data.item
    if repo.catalog_by_code(session, code):
        raise Conflict(f"catalog {code} already exists", field="item")
    org_id = get_org(session, data.org).id if data.org else None
    if data.kind == "department" and org_id is None:
        raise ValidationFailed("a department catalog needs its organization", field="org")
    cat = Catalog(kind=data.kind, code=code, name=data.name, org_id=org_id, description=data.description)
    session.add(cat)
    session.flush()
    session.add(Category(catalog_id=cat.id, code="001", name="综合"))
    record(session, actor, "catalog.create", f"catalog:{code}", {"name": data.name})
    return cat


def get_catalog(session: Session, code: str) -> Catalog:
    cat = repo.catalog_by_code(session, code)
    if cat is None:
        raise NotFound(f"catalog {code} not found", field="catalog")
    return cat


def add_category(session: Session, actor: Actor, catalog: Catalog, data: CategoryIn) -> Category:
    actor.require("catalog.manage", catalog.org_id)
    if repo.category(session, catalog.id, data.code):
        raise Conflict(f"category {catalog.code}{data.code} already exists", field="code")
    cat = Category(catalog_id=catalog.id, code=data.code, name=data.name)
    session.add(cat)
    session.flush()
    record(session, actor, "category.create", f"category:{catalog.code}{data.code}", {"name": data.name})
    return cat


def ensure_category(session: Session, catalog: Catalog, code: str, name: str) -> Category:
    """Used by imports: a named category is created the first time it is referenced."""
    existing = repo.category(session, catalog.id, code)
    if existing:
        return existing
    cat = Category(catalog_id=catalog.id, code=code, name=name)
    session.add(cat)
    session.flush()
    return cat


def catalog_tree(session: Session) -> list[CatalogOut]:
    counts = repo.resource_counts_by_category(session)
    return [
        CatalogOut(
            code=c.code, kind=c.kind, name=c.name, org=c.org.code if c.org else None,
            description=c.description,
            categories=[CategoryOut(code=k.code, name=k.name, resource_count=counts.get(k.id, 0))
                        for k in c.categories],
        )
        for c in repo.list_catalogs(session)
    ]
