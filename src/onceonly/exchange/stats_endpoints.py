"""Exchange statistics API: /api/v1/exchange/stats and /api/v1/exchange/stats/summary.
Staff only: the platform admin and auditors see the whole city, department roles their own
organization's calls (as consumer or provider)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from onceonly.accounts.actor import Actor
from onceonly.deps import CurrentActor, DbSession
from onceonly.errors import PermissionDenied
from onceonly.exchange import stats
from onceonly.exchange.stats import Group, StatsOut, SummaryOut

router = APIRouter(prefix="/exchange", tags=["exchange"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not signed in"},
    403: {"description": "Role may not read exchange statistics"},
    422: {"description": "Invalid parameter (problem+json names it): a bad date, `to` before `from`, "
                         "a range over 366 days, an unknown group"},
}
FromDay = Annotated[date | None, Query(alias="from", description="first day (YYYY-MM-DD, the city's day, UTC+8); "
                                                                 "default 29 days before `to`")]
ToDay = Annotated[date | None, Query(alias="to", description="last day, included; default today")]


def stats_reader(actor: CurrentActor) -> Actor:
    """Staff who may read exchange figures: platform admin, auditor, department roles (scoped)."""
    if not actor.can("exchange.read"):
        raise PermissionDenied(f"role {actor.role} may not read exchange statistics")
    return actor


StatsReader = Annotated[Actor, Depends(stats_reader)]


@router.get("/stats", response_model=StatsOut, responses=ERRORS,
            summary="Calls, failures, records, bytes and p50/p95 latency per service, provider, consumer, "
                    "consumer organization, mode or day")
def get_stats(session: DbSession, actor: StatsReader, start: FromDay = None, end: ToDay = None,
              group: Annotated[Group, Query(description="what one row is")] = "service",
              limit: Annotated[int, Query(ge=1, le=stats.MAX_ROWS, description="rows (most calls first; "
                                                                               "day lists every day)")] = 100,
              ) -> StatsOut:
    return stats.stats(session, actor, group, start, end, limit=limit)


@router.get("/stats/summary", response_model=SummaryOut, responses=ERRORS,
            summary="Headline figures: services offered, departments connected, calls, records exchanged")
def get_summary(session: DbSession, actor: StatsReader, start: FromDay = None, end: ToDay = None) -> SummaryOut:
    return stats.summary(session, actor, start, end)
