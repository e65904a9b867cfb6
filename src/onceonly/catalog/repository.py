"""Every query of the catalog domain."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from onceonly.catalog.models import (
    Catalog,
    Category,
    Code,
    CodeList,
    CodeMapping,
    Organization,
    Resource,
)


def org_by_code(session: Session, code: str) -> Organization | None:
    return session.scalar(select(Organization).where(Organization.code == code))


def list_orgs(session: Session) -> Sequence[Organization]:
    return session.scalars(select(Organization).order_by(Organization.number)).all()


def next_org_number(session: Session) -> int:
    return (session.scalar(select(func.max(Organization.number))) or 0) + 1


def catalog_by_code(session: Session, code: str) -> Catalog | None:
    return session.scalar(select(Catalog).where(Catalog.code == code).options(selectinload(Catalog.categories)))


def list_catalogs(session: Session) -> Sequence[Catalog]:
    return session.scalars(select(Catalog).order_by(Catalog.code).options(selectinload(Catalog.categories))).all()


def category(session: Session, catalog_id: int, code: str) -> Category | None:
    return session.scalar(select(Category).where(Category.catalog_id == catalog_id, Category.code == code))


def resource_counts_by_category(session: Session) -> dict[int, int]:
    rows = session.execute(
        select(Resource.category_id, func.count()).where(Resource.status != "retired").group_by(Resource.category_id)
    ).all()
    return {cid: n for cid, n in rows}


def resource_by_id(session: Session, resource_id: int) -> Resource | None:
    return session.get(Resource, resource_id)


def resource_by_code(session: Session, code: str) -> Resource | None:
    rows = session.scalars(select(Resource).where(Resource.code == code).order_by(Resource.version.desc())).all()
    return next((r for r in rows if r.status == "published"), rows[0] if rows else None)


def latest_resource_by_name(session: Session, name: str) -> Resource | None:
    """The newest version, preferring a published one over a newer draft."""
    rows = session.scalars(select(Resource).where(Resource.name == name).order_by(Resource.version.desc())).all()
    for row in rows:
        if row.status == "published":
            return row
    return rows[0] if rows else None


def draft_version(session: Session, name_or_code: str) -> Resource | None:
    """The draft among a resource's versions, found by name or code."""
    column = Resource.code if "/" in name_or_code else Resource.name
    return session.scalar(select(Resource).where(column == name_or_code, Resource.status == "draft"))


def versions_of(session: Session, name: str) -> Sequence[Resource]:
    return session.scalars(select(Resource).where(Resource.name == name).order_by(Resource.version)).all()


def search_resources(
    session: Session, *, q: str | None = None, provider_id: int | None = None, catalog_id: int | None = None,
    category_id: int | None = None, status: str | None = None, offset: int = 0, limit: int = 50,
) -> tuple[Sequence[Resource], int]:
    stmt = select(Resource).join(Organization, Resource.provider_id == Organization.id).join(
        Category, Resource.category_id == Category.id
    )
    if q and "\x00" in q:  # no stored text holds NUL (PostgreSQL cannot even take it as a parameter)
        return [], 0
    if q:
        like = f"%{_escape_like(q)}%"
        stmt = stmt.where(or_(
            Resource.title.like(like, escape="\\"), Resource.name.like(like, escape="\\"),
            Resource.code.like(like, escape="\\"), Organization.name.like(like, escape="\\"),
            Organization.short_name.like(like, escape="\\"),
        ))
    if provider_id is not None:
        stmt = stmt.where(Resource.provider_id == provider_id)
    if catalog_id is not None:
        stmt = stmt.where(Category.catalog_id == catalog_id)
    if category_id is not None:
        stmt = stmt.where(Resource.category_id == category_id)
    stmt = stmt.where(Resource.status == status) if status else stmt.where(Resource.status != "retired")
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(
        stmt.order_by(Resource.code).offset(offset).limit(limit).options(
            selectinload(Resource.provider), selectinload(Resource.fields),
            selectinload(Resource.category).selectinload(Category.catalog),
        )
    ).all()
    return rows, total


def all_resources(session: Session, include_retired: bool = False) -> Sequence[Resource]:
    stmt = select(Resource).order_by(Resource.code).options(selectinload(Resource.fields))
    if not include_retired:
        stmt = stmt.where(Resource.status != "retired")
    return session.scalars(stmt).all()


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def code_list_by_code(session: Session, code: str) -> CodeList | None:
    return session.scalar(select(CodeList).where(CodeList.code == code))


def list_code_lists(session: Session) -> Sequence[tuple[CodeList, int]]:
    size = select(Code.code_list_id, func.count().label("n")).group_by(Code.code_list_id).subquery()
    rows = session.execute(
        select(CodeList, func.coalesce(size.c.n, 0)).outerjoin(size, size.c.code_list_id == CodeList.id)
        .order_by(CodeList.standard.desc(), CodeList.code)
    ).all()
    return [(cl, int(n)) for cl, n in rows]


def codes_of(session: Session, code_list_id: int, current_only: bool = False) -> Sequence[Code]:
    stmt = select(Code).where(Code.code_list_id == code_list_id).order_by(Code.code)
    if current_only:
        stmt = stmt.where(Code.current.is_(True))
    return session.scalars(stmt).all()


def mappings(session: Session, org_id: int | None, code_list_id: int | None) -> Sequence[CodeMapping]:
    stmt = select(CodeMapping).order_by(CodeMapping.local_code)
    if org_id is not None:
        stmt = stmt.where(CodeMapping.org_id == org_id)
    if code_list_id is not None:
        stmt = stmt.where(CodeMapping.code_list_id == code_list_id)
    return session.scalars(stmt).all()
