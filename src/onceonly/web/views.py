"""View models: what the catalog pages show, built from service results (no queries here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from onceonly.catalog.models import Organization, Resource
from onceonly.catalog.schemas import CatalogOut, ResourceOut
from onceonly.kit.divisions import all_divisions

KIND_ORDER = ("basic", "theme", "department")


@dataclass(frozen=True)
class CatalogNode:
    code: str
    kind: str
    name: str
    categories: list[tuple[str, str, int]]  # code, name, resource count

    @property
    def resource_count(self) -> int:
        return sum(n for _, _, n in self.categories)


@dataclass(frozen=True)
class CatalogGroup:
    kind: str
    catalogs: list[CatalogNode]

    @property
    def resource_count(self) -> int:
        return sum(c.resource_count for c in self.catalogs)


def catalog_groups(tree: list[CatalogOut]) -> list[CatalogGroup]:
    nodes = [CatalogNode(c.code, c.kind, c.name, [(k.code, k.name, k.resource_count) for k in c.categories])
             for c in tree]
    return [CatalogGroup(kind, [n for n in nodes if n.kind == kind]) for kind in KIND_ORDER]


@dataclass(frozen=True)
class ResourceRow:
    id: int
    code: str
    name: str
    title: str
    version: int
    provider_code: str
    provider_name: str
    catalog_code: str
    catalog_name: str
    category_code: str
    category_name: str
    share_type: str
    open_type: str
    update_cycle: str
    status: str
    field_count: int


def resource_row(res: Resource) -> ResourceRow:
    cat = res.category
    return ResourceRow(
        id=res.id, code=res.code, name=res.name, title=res.title, version=res.version,
        provider_code=res.provider.code, provider_name=res.provider.name,
        catalog_code=cat.catalog.code, catalog_name=cat.catalog.name, category_code=cat.code,
        category_name=cat.name, share_type=res.share_type, open_type=res.open_type,
        update_cycle=res.update_cycle, status=res.status, field_count=len(res.fields),
    )


@dataclass(frozen=True)
class ResourceDetail:
    out: ResourceOut
    row: ResourceRow
    row_count: int
    versions: list[tuple[int, int, str]] = field(default_factory=list)  # id, version, status


@dataclass(frozen=True)
class OrgRow:
    number: int
    code: str
    name: str
    short_name: str
    parent_name: str
    region_code: str
    region_name: str
    catalog_code: str


def org_row(org: Organization, catalog_code: str) -> OrgRow:
    division = all_divisions().get(org.region or "")
    return OrgRow(
        number=org.number, code=org.code, name=org.name, short_name=org.short_name or "",
        parent_name=org.parent.name if org.parent else "", region_code=org.region or "",
        region_name=division.name if division else "", catalog_code=catalog_code,
    )
