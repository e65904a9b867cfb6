"""Catalog API: organizations, catalogs, resources and their lifecycle, code lists, mappings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from onceonly.catalog import codelists, orgs, service
from onceonly.catalog import repository as repo
from onceonly.catalog.schemas import (
    CatalogIn,
    CatalogOut,
    CategoryIn,
    CodeListIn,
    CodeListOut,
    CodeOut,
    MappingIn,
    MappingOut,
    OrgIn,
    OrgOut,
    Page,
    ResourceOut,
    ResourcePatch,
    ResourceSpec,
)
from onceonly.deps import CurrentActor, DbSession
from onceonly.store import service as store

router = APIRouter()
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not signed in"}, 403: {"description": "Role may not do this"},
    404: {"description": "Not found"}, 409: {"description": "Conflicts with the current state"},
    422: {"description": "Invalid input (problem+json names the field)"},
}


class RowCount(BaseModel):
    resource: str
    version: int
    rows: int
    last_seq: int


class ChangeOut(BaseModel):
    seq: int
    op: str
    key: str
    batch_id: int | None


# -- organizations --------------------------------------------------------------------------

@router.get("/orgs", response_model=list[OrgOut], tags=["organizations"], responses=ERRORS)
def list_orgs(session: DbSession, actor: CurrentActor) -> list[OrgOut]:
    return [orgs.org_out(o) for o in repo.list_orgs(session)]


@router.post("/orgs", response_model=OrgOut, status_code=201, tags=["organizations"], responses=ERRORS)
def add_org(data: OrgIn, session: DbSession, actor: CurrentActor) -> OrgOut:
    return orgs.org_out(orgs.add_org(session, actor, data))


@router.get("/orgs/{code}", response_model=OrgOut, tags=["organizations"], responses=ERRORS)
def get_org(code: str, session: DbSession, actor: CurrentActor) -> OrgOut:
    return orgs.org_out(orgs.get_org(session, code))


# -- catalogs -------------------------------------------------------------------------------

@router.get("/catalogs", response_model=list[CatalogOut], tags=["catalog"], responses=ERRORS)
def catalog_tree(session: DbSession, actor: CurrentActor) -> list[CatalogOut]:
    return orgs.catalog_tree(session)


@router.post("/catalogs", response_model=CatalogOut, status_code=201, tags=["catalog"], responses=ERRORS)
def create_catalog(data: CatalogIn, session: DbSession, actor: CurrentActor) -> CatalogOut:
    cat = orgs.create_catalog(session, actor, data)
    return next(c for c in orgs.catalog_tree(session) if c.code == cat.code)


@router.post("/catalogs/{code}/categories", response_model=CatalogOut, status_code=201, tags=["catalog"],
             responses=ERRORS)
def add_category(code: str, data: CategoryIn, session: DbSession, actor: CurrentActor) -> CatalogOut:
    orgs.add_category(session, actor, orgs.get_catalog(session, code), data)
    session.expire_all()
    return next(c for c in orgs.catalog_tree(session) if c.code == code)


# -- resources ------------------------------------------------------------------------------

@router.get("/resources", response_model=Page[ResourceOut], tags=["resources"], responses=ERRORS,
            summary="Search resources by name, code or provider")
def search_resources(
    session: DbSession, actor: CurrentActor,
    q: Annotated[str | None, Query(max_length=100)] = None,
    provider: Annotated[str | None, Query(max_length=18)] = None,
    catalog: Annotated[str | None, Query(pattern=r"^\d{3}$")] = None,
    status: Annotated[str | None, Query(pattern="^(draft|published|retired)$")] = None,
    offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[ResourceOut]:
    provider_id = orgs.get_org(session, provider).id if provider else None
    catalog_id = orgs.get_catalog(session, catalog).id if catalog else None
    rows, total = repo.search_resources(session, q=q, provider_id=provider_id, catalog_id=catalog_id,
                                        status=status, offset=offset, limit=limit)
    return Page[ResourceOut](items=[service.resource_out(r) for r in rows], total=total, offset=offset,
                             limit=limit)


@router.post("/resources", response_model=ResourceOut, status_code=201, tags=["resources"], responses=ERRORS,
             summary="Describe a new resource (a draft)")
def create_resource(spec: ResourceSpec, session: DbSession, actor: CurrentActor) -> ResourceOut:
    return service.resource_out(service.create_resource(session, actor, spec))


@router.post("/resources/{ref:path}/publish", response_model=ResourceOut, tags=["resources"], responses=ERRORS)
def publish(ref: str, session: DbSession, actor: CurrentActor) -> ResourceOut:
    res = service.get_resource(session, ref, editing=True)
    return service.resource_out(service.publish_resource(session, actor, res))


@router.post("/resources/{ref:path}/retire", response_model=ResourceOut, tags=["resources"], responses=ERRORS)
def retire(ref: str, session: DbSession, actor: CurrentActor) -> ResourceOut:
    return service.resource_out(service.retire_resource(session, actor, service.get_resource(session, ref)))


@router.get("/resources/{ref:path}/versions", response_model=list[ResourceOut], tags=["resources"], responses=ERRORS)
def versions(ref: str, session: DbSession, actor: CurrentActor) -> list[ResourceOut]:
    res = service.get_resource(session, ref)
    return [service.resource_out(r) for r in repo.versions_of(session, res.name)]


@router.post("/resources/{ref:path}/versions", response_model=ResourceOut, status_code=201, tags=["resources"],
             responses=ERRORS, summary="Start a new version (a draft) from the body or a copy of this one")
def new_version(ref: str, session: DbSession, actor: CurrentActor, spec: ResourceSpec | None = None) -> ResourceOut:
    return service.resource_out(service.new_version(session, actor, service.get_resource(session, ref), spec))


@router.get("/resources/{ref:path}/count", response_model=RowCount, tags=["resources"], responses=ERRORS)
def count(ref: str, session: DbSession, actor: CurrentActor) -> RowCount:
    res = service.get_resource(session, ref)
    return RowCount(resource=res.code, version=res.version, rows=store.row_count(session, res),
                    last_seq=res.last_seq)


@router.get("/resources/{ref:path}/changes", response_model=list[ChangeOut], tags=["resources"], responses=ERRORS,
            summary="The change log after a sequence number (cursor); the provider's own staff only")
def changes(ref: str, session: DbSession, actor: CurrentActor,
            since: Annotated[int, Query(ge=0)] = 0,
            limit: Annotated[int, Query(ge=1, le=10000)] = 1000) -> list[ChangeOut]:
    res = service.get_resource(session, ref)
    return [ChangeOut(seq=c.seq, op=c.op, key=c.key, batch_id=c.batch_id)
            for c in service.read_changes(session, actor, res, since, limit)]


# Declared after the routes with a suffix: {ref:path} (codes contain '/') would swallow them.
@router.get("/resources/{ref:path}", response_model=ResourceOut, tags=["resources"], responses=ERRORS,
            summary="One resource by id, name or code")
def get_resource(ref: str, session: DbSession, actor: CurrentActor) -> ResourceOut:
    return service.resource_out(service.get_resource(session, ref))


@router.patch("/resources/{ref:path}", response_model=ResourceOut, tags=["resources"], responses=ERRORS,
              summary="Edit a draft; a published resource only takes metadata and new nullable fields")
def update_resource(ref: str, patch: ResourcePatch, session: DbSession, actor: CurrentActor) -> ResourceOut:
    res = service.get_resource(session, ref, editing=True)
    return service.resource_out(service.update_resource(session, actor, res, patch))


# -- code lists and mappings ----------------------------------------------------------------

@router.get("/code-lists", response_model=list[CodeListOut], tags=["code lists"], responses=ERRORS)
def list_code_lists(session: DbSession, actor: CurrentActor) -> list[CodeListOut]:
    return [codelists.code_list_out(cl, n) for cl, n in repo.list_code_lists(session)]


@router.post("/code-lists", response_model=CodeListOut, status_code=201, tags=["code lists"], responses=ERRORS)
def create_code_list(data: CodeListIn, session: DbSession, actor: CurrentActor) -> CodeListOut:
    cl = codelists.create_code_list(session, actor, data)
    return codelists.code_list_out(cl, len(data.codes))


@router.get("/code-lists/{code:path}/codes", response_model=list[CodeOut], tags=["code lists"], responses=ERRORS)
def list_codes(code: str, session: DbSession, actor: CurrentActor,
               current: bool = True) -> list[CodeOut]:
    cl = codelists.get_code_list(session, code)
    return [CodeOut(code=c.code, name=c.name, current=c.current) for c in repo.codes_of(session, cl.id, current)]


@router.get("/code-mappings", response_model=list[MappingOut], tags=["code lists"], responses=ERRORS)
def list_mappings(session: DbSession, actor: CurrentActor,
                  org: Annotated[str | None, Query(max_length=18)] = None,
                  code_list: Annotated[str | None, Query(max_length=40)] = None) -> list[MappingOut]:
    org_row = orgs.get_org(session, org) if org else None
    cl = codelists.get_code_list(session, code_list) if code_list else None
    out = []
    org_codes = {o.id: o.code for o in repo.list_orgs(session)}
    list_codes_by_id = {c.id: c.code for c, _ in repo.list_code_lists(session)}
    for m in repo.mappings(session, org_row.id if org_row else None, cl.id if cl else None):
        out.append(MappingOut(org=org_codes[m.org_id], code_list=list_codes_by_id[m.code_list_id],
                              local_code=m.local_code, local_name=m.local_name, standard_code=m.standard_code))
    return out


@router.put("/code-mappings", response_model=list[MappingOut], tags=["code lists"], responses=ERRORS,
            summary="Add or change a department's local → standard code mappings")
def set_mappings(data: MappingIn, session: DbSession, actor: CurrentActor) -> list[MappingOut]:
    codelists.set_mappings(session, actor, data)
    return list_mappings(session, actor, data.org, data.code_list)
