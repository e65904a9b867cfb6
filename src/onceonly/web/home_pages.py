"""The dashboard a staff member lands on after signing in."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from onceonly.catalog import orgs
from onceonly.catalog import repository as repo
from onceonly.deps import DbSession
from onceonly.store import service as store
from onceonly.web.catalog_pages import Reader
from onceonly.web.csrf import csrf_guard
from onceonly.web.pages import render
from onceonly.web.views import catalog_groups

router = APIRouter(dependencies=[Depends(csrf_guard)], include_in_schema=False)

# Summing row counts is one COUNT per table; above this many resources the tile is left out
# until the store offers a set-based total.
ROW_TOTAL_MAX_RESOURCES = 200


@dataclass(frozen=True)
class Dashboard:
    departments: int
    catalogs: int
    published: int
    drafts: int
    total_rows: int | None


def _total_rows(session: Session, published: int) -> int | None:
    if published > ROW_TOTAL_MAX_RESOURCES:
        return None
    rows, _ = repo.search_resources(session, status="published", limit=ROW_TOTAL_MAX_RESOURCES)
    return sum(store.row_count(session, r) for r in rows)


@router.get("/")
def home(request: Request, session: DbSession, actor: Reader) -> Response:
    tree = orgs.catalog_tree(session)
    _, published = repo.search_resources(session, status="published", limit=1)
    _, drafts = repo.search_resources(session, status="draft", limit=1)
    stats = Dashboard(departments=len(repo.list_orgs(session)), catalogs=len(tree), published=published,
                      drafts=drafts, total_rows=_total_rows(session, published))
    return render(request, "home.html", {"stats": stats, "groups": catalog_groups(tree)}, actor=actor, nav="home")
