"""交换统计: the exchange dashboard — the headline figures a city reports and charts of calls,
records, failures and latency. The numbers come from exchange/stats.py (as the API's do) and
are embedded in the page as JSON, which static/js/exchange-stats.js draws with the vendored
ECharts (no inline script, so the Content-Security-Policy stays strict)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from onceonly.deps import DbSession
from onceonly.errors import PlatformError, ValidationFailed
from onceonly.exchange import stats
from onceonly.exchange.stats_endpoints import StatsReader
from onceonly.web.csrf import csrf_guard
from onceonly.web.pages import render

router = APIRouter(dependencies=[Depends(csrf_guard)], include_in_schema=False)

TOP_SERVICES = 10


def _day(value: str, name: str) -> date | None:
    value = value.strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise ValidationFailed(f"{name} must be a date (YYYY-MM-DD)", field=name) from None


def chart_data(days: stats.StatsOut, top: stats.StatsOut) -> dict[str, Any]:
    """What the charts draw: per day calls (ok / failed), records, p95; the top services."""
    return {
        "days": [r.key for r in days.rows],
        "ok": [r.ok for r in days.rows], "failed": [r.failed for r in days.rows],
        "records": [r.records for r in days.rows], "p95": [r.p95_ms for r in days.rows],
        "p50": [r.p50_ms for r in days.rows],
        "services": [f"{r.key} {r.name or ''}".strip() if r.key else "—" for r in top.rows],
        "service_calls": [r.calls for r in top.rows],
        "total_ok": days.total.ok, "total_failed": days.total.failed,
    }


@router.get("/exchange/stats")
def stats_page(request: Request, session: DbSession, actor: StatsReader,
               start: Annotated[str, Query(alias="from")] = "", end: Annotated[str, Query(alias="to")] = "",
               ) -> Response:
    """`?from=&to=` as in the API: whole city days, both included."""
    form = {"from": start[:10], "to": end[:10]}
    error = None
    try:
        first, last = _day(start, "from"), _day(end, "to")
        days = stats.stats(session, actor, "day", first, last)
    except PlatformError as exc:
        if not isinstance(exc, ValidationFailed):
            raise
        error = exc
        days = stats.stats(session, actor, "day")
    top = stats.stats(session, actor, "service", days.from_, days.to, limit=TOP_SERVICES, total=days.total)
    head = stats.summary(session, actor, days.from_, days.to, total=days.total)
    context = {"head": head, "days": days, "top": top, "form": form, "error": error, "chart": chart_data(days, top)}
    return render(request, "exchange/stats.html", context, actor=actor, status=422 if error else 200, nav="stats")
