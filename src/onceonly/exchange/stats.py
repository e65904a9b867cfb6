"""Exchange statistics: the numbers a city reports about its data sharing — services offered,
departments connected, calls, records exchanged — and calls, failures, records, bytes and
p50/p95 latency per service, provider, consumer system, consumer organization, mode or day.

Everything is computed from the audit log's call records (one per exchange call, answered or
denied, written by every worker before the call is answered), so the numbers cover all worker
processes and survive restarts. Days are the city's (Asia/Shanghai, UTC+8); a range is whole
days `from`..`to`, both included. Department roles see only calls their organization made or
answered; the platform admin and auditors see all. See docs/exchange-stats.md."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.accounts.roles import ORG_ROLES
from onceonly.db import utcnow
from onceonly.errors import PermissionDenied, ValidationFailed
from onceonly.exchange import stats_repository as repo
from onceonly.exchange.grants import CITY_TZ, city_today
from onceonly.exchange.stats_repository import Aggregate, Scope

Group = Literal["service", "provider", "consumer", "consumer_org", "mode", "day"]
DEFAULT_DAYS = 30
MAX_DAYS = 366
MAX_ROWS = 1000
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)  # days a range may name


class StatRow(BaseModel):
    key: str | None = Field(description="the group's value: service code, organization code, system code, mode or "
                                        "day (YYYY-MM-DD); null for calls without one (e.g. an unknown service)")
    name: str | None = Field(default=None, description="service, system or organization name")
    org: str | None = Field(default=None, description="provider (service) or owner (system) organization code")
    org_name: str | None = None
    calls: int
    ok: int = Field(description="calls answered with a status below 400")
    failed: int = Field(description="calls answered with status 400 or above (denied, throttled, errors)")
    records: int = Field(description="records returned")
    bytes: int = Field(description="response bytes")
    avg_ms: float | None = Field(description="mean latency in milliseconds")
    p50_ms: int | None = Field(description="median latency (nearest rank), milliseconds")
    p95_ms: int | None = Field(description="95th percentile latency (nearest rank), milliseconds")


class StatsOut(BaseModel):
    from_: date = Field(alias="from", serialization_alias="from")
    to: date
    timezone: str = repo.CITY_ZONE
    group: Group
    scope: str | None = Field(description="organization code the figures are limited to; null = the whole city")
    rows: list[StatRow]
    total: StatRow

    model_config = {"populate_by_name": True}


class SummaryOut(BaseModel):
    from_: date = Field(alias="from", serialization_alias="from")
    to: date
    timezone: str = repo.CITY_ZONE
    scope: str | None
    services_offered: int = Field(description="published services (the whole city)")
    departments_connected: int = Field(
        description="organizations with a system holding an active grant or providing a published service")
    consumer_departments: int
    provider_departments: int
    active_grants: int = Field(description="grants neither revoked nor expired (in scope)")
    calls: int
    ok: int
    failed: int
    records_exchanged: int = Field(description="records returned by calls in the range")
    bytes: int
    p50_ms: int | None
    p95_ms: int | None

    model_config = {"populate_by_name": True}


# -- who sees what -----------------------------------------------------------------------------

def scope_for(session: Session, actor: Actor) -> Scope | None:
    """Department roles: their organization's calls; the platform admin and auditors: all."""
    if not actor.can("exchange.read"):
        raise PermissionDenied(f"role {actor.role} may not read exchange statistics")
    if actor.via != "cli" and actor.role in ORG_ROLES:
        from onceonly.catalog.models import Organization

        org = session.get(Organization, actor.org_id) if actor.org_id is not None else None
        if org is None:
            raise PermissionDenied("a department role without an organization sees no statistics")
        return Scope(org_id=org.id, org_code=org.code)
    return None


# -- ranges ------------------------------------------------------------------------------------

def day_range(start: date | None, end: date | None, today: date | None = None) -> tuple[date, date]:
    """The days asked for, checked: default the last 30 days through today; at most 366 days."""
    for name, day in (("from", start), ("to", end)):
        if day is not None and not FIRST_DAY <= day <= LAST_DAY:
            raise ValidationFailed(f"{name} must be between {FIRST_DAY} and {LAST_DAY}", field=name)
    today = today or city_today()
    end = end or (today if start is None else min(today, start + timedelta(days=DEFAULT_DAYS - 1)))
    start = start or end - timedelta(days=DEFAULT_DAYS - 1)
    if end < start:
        raise ValidationFailed("to must not be before from", field="to")
    if (end - start).days + 1 > MAX_DAYS:
        raise ValidationFailed(f"the range may span at most {MAX_DAYS} days", field="from")
    return start, end


def instants(start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00, the day after end 00:00) in the city, as UTC instants."""
    return (datetime.combine(start, time(0), CITY_TZ).astimezone(UTC),
            datetime.combine(end + timedelta(days=1), time(0), CITY_TZ).astimezone(UTC))


# -- figures -----------------------------------------------------------------------------------

def _row(a: Aggregate, name: str | None = None, org: str | None = None, org_name: str | None = None) -> StatRow:
    return StatRow(key=a.key, name=name, org=org, org_name=org_name, calls=a.calls, ok=a.calls - a.failed,
                   failed=a.failed, records=a.records, bytes=a.bytes,
                   avg_ms=round(a.latency_sum / a.calls, 1) if a.calls else None, p50_ms=a.p50, p95_ms=a.p95)


EMPTY = Aggregate(key=None, calls=0, failed=0, records=0, bytes=0, latency_sum=0, p50=None, p95=None)


def _labelled(session: Session, group: str, found: list[Aggregate]) -> list[StatRow]:
    keys = [a.key for a in found if a.key is not None]
    if group == "service":
        services = repo.service_labels(session, keys)
        return [_row(a, *services.get(a.key or "", (None, None, None))) for a in found]
    if group == "consumer":
        systems = repo.system_labels(session, keys)
        return [_row(a, *systems.get(a.key or "", (None, None, None))) for a in found]
    if group in ("provider", "consumer_org"):
        names = repo.org_names(session, keys)
        return [_row(a, names.get(a.key or "")) for a in found]
    return [_row(a) for a in found]


def stats(session: Session, actor: Actor, group: Group, start: date | None = None, end: date | None = None, *,
          limit: int = 100, total: StatRow | None = None) -> StatsOut:
    """Figures per group over whole city days; `day` lists every day of the range (zeros too).
    `total`, when the caller already has the range's total (same range and actor), is reused."""
    if group not in repo.GROUPS:
        raise ValidationFailed(f"group must be one of {', '.join(repo.GROUPS)}", field="group")
    if not 1 <= limit <= MAX_ROWS:
        raise ValidationFailed(f"limit must be 1-{MAX_ROWS}", field="limit")
    scope = scope_for(session, actor)
    start, end = day_range(start, end)
    since, until = instants(start, end)
    found = repo.aggregates(session, since, until, group, scope=scope, limit=None if group == "day" else limit)
    if group == "day":
        by_day = {a.key: a for a in found}
        days = [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
        found = [by_day.get(d) or Aggregate(d, 0, 0, 0, 0, 0, None, None) for d in days]
    if total is None:
        total = _row((repo.aggregates(session, since, until, None, scope=scope) or [EMPTY])[0])
    return StatsOut(from_=start, to=end, group=group, scope=scope.org_code if scope else None,
                    rows=_labelled(session, group, found), total=total)


def summary(session: Session, actor: Actor, start: date | None = None, end: date | None = None, *,
            total: StatRow | None = None) -> SummaryOut:
    """The headline figures: services offered and departments connected (now, the whole city),
    active grants (now, in scope), and calls and records exchanged over the range (in scope).
    `total`, when the caller already has the range's total (same range and actor), is reused."""
    scope = scope_for(session, actor)
    start, end = day_range(start, end)
    since, until = instants(start, end)
    now = utcnow()
    if total is None:
        total = _row((repo.aggregates(session, since, until, None, scope=scope) or [EMPTY])[0])
    connected, consumers, providers = repo.connected_departments(session, now)
    return SummaryOut(
        from_=start, to=end, scope=scope.org_code if scope else None,
        services_offered=repo.published_services(session), departments_connected=connected,
        consumer_departments=consumers, provider_departments=providers,
        active_grants=repo.active_grants(session, now, scope.org_id if scope else None),
        calls=total.calls, ok=total.ok, failed=total.failed, records_exchanged=total.records,
        bytes=total.bytes, p50_ms=total.p50_ms, p95_ms=total.p95_ms,
    )
