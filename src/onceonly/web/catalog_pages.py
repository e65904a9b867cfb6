"""The catalog browser: tree, search with pagination, resource pages, organizations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from onceonly.accounts.actor import Actor
from onceonly.catalog import orgs, service
from onceonly.catalog import repository as repo
from onceonly.deps import CurrentActor, DbSession
from onceonly.errors import NotFound
from onceonly.store import service as store
from onceonly.web.csrf import csrf_guard
from onceonly.web.pages import is_htmx, render, render_error
from onceonly.web.pagination import Pager, page_number
from onceonly.web.views import ResourceDetail, catalog_groups, org_row, resource_row

router = APIRouter(dependencies=[Depends(csrf_guard)], include_in_schema=False)

PAGE_SIZE = 20
MAX_QUERY = 100


def catalog_reader(actor: CurrentActor) -> Actor:
    actor.require("catalog.read")
    return actor


Reader = Annotated[Actor, Depends(catalog_reader)]


@router.get("/catalog")
def catalog_page(request: Request, session: DbSession, actor: Reader, q: str = "", catalog: str = "",
                 category: str = "", provider: str = "", page: str = "1") -> Response:
    q, catalog, category, provider = q.strip()[:MAX_QUERY], catalog.strip(), category.strip(), provider.strip()
    if not catalog:
        category = ""
    catalog_id = category_id = provider_id = None
    notice = None
    try:
        if catalog:
            cat = orgs.get_catalog(session, catalog)
            catalog_id = cat.id
            if category:
                found = repo.category(session, cat.id, category)
                if found is None:
                    raise NotFound(f"category {catalog}{category} not found", field="category")
                category_id = found.id
        if provider:
            provider_id = orgs.get_org(session, provider).id
    except NotFound as exc:
        notice = exc.message
    pager = Pager(page_number(page), PAGE_SIZE, 0, "/catalog",
                  (("q", q), ("catalog", catalog), ("category", category), ("provider", provider)))
    rows = []
    if notice is None:
        found_rows, total = repo.search_resources(session, q=q or None, catalog_id=catalog_id,
                                                  category_id=category_id, provider_id=provider_id,
                                                  offset=pager.offset, limit=PAGE_SIZE)
        pager = Pager(pager.page, PAGE_SIZE, total, pager.path, pager.params)
        rows = [resource_row(r) for r in found_rows]
    context = {
        "rows": rows, "pager": pager, "notice": notice, "q": q, "catalog": catalog, "category": category,
        "provider": provider,
    }
    if is_htmx(request):
        return render(request, "catalog/_results.html", context, actor=actor)
    context["groups"] = catalog_groups(orgs.catalog_tree(session))
    context["providers"] = [(o.code, o.name) for o in repo.list_orgs(session)]
    return render(request, "catalog/index.html", context, actor=actor, nav="catalog")


@router.get("/catalog/resources/{ref:path}")
def resource_page(ref: str, request: Request, session: DbSession, actor: Reader) -> Response:
    try:
        res = service.get_resource(session, ref)
    except NotFound as exc:
        return render_error(request, exc, actor=actor)
    detail = ResourceDetail(
        out=service.resource_out(res), row=resource_row(res), row_count=store.row_count(session, res),
        versions=[(v.id, v.version, v.status) for v in repo.versions_of(session, res.name)],
    )
    return render(request, "catalog/resource.html", {"r": detail}, actor=actor, nav="catalog")


@router.get("/orgs")
def orgs_page(request: Request, session: DbSession, actor: Reader) -> Response:
    catalogs = {c.org: c.code for c in orgs.catalog_tree(session) if c.org}
    rows = [org_row(o, catalogs.get(o.code, "")) for o in repo.list_orgs(session)]
    return render(request, "orgs.html", {"orgs": rows}, actor=actor, nav="orgs")
