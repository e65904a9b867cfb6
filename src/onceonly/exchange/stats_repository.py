"""Every query of the exchange statistics: set-based aggregates over the audit log's call
records, joined with services, systems and organizations for provider and consumer.

Percentiles are exact nearest-rank values computed in SQL with window functions, which SQLite
(≥ 3.25) and PostgreSQL both have: the calls of a group are first counted per distinct latency
(a histogram, far fewer rows than calls), then a running count over the latencies in order
(`sum(n) over (… order by latency rows unbounded preceding)`) finds the p-th percentile — the
smallest latency whose running count reaches rank ceil(p/100 · n), in integer arithmetic, so
both databases agree to the millisecond. The range filter uses the audit log's index on `at`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    FromClause,
    case,
    cast,
    distinct,
    func,
    literal,
    or_,
    select,
    union,
)
from sqlalchemy.orm import Session

from onceonly.audit.models import AuditRecord
from onceonly.catalog.models import Organization
from onceonly.exchange.models import Grant, Service, System

CITY_ZONE = "Asia/Shanghai"  # UTC+8 all year (no daylight saving since 1991)
GROUPS = ("service", "provider", "consumer", "consumer_org", "mode", "day")

_a = AuditRecord.metadata.tables["audit_records"]
_svc = Service.metadata.tables["exchange_services"].alias("svc")
_prov = Organization.metadata.tables["organizations"].alias("prov")


@dataclass(frozen=True)
class Scope:
    """Department roles see the calls their organization made (as consumer) or answered (as
    provider); None means every call."""

    org_id: int
    org_code: str


@dataclass(frozen=True)
class Aggregate:
    key: str | None
    calls: int
    failed: int
    records: int
    bytes: int
    latency_sum: int
    p50: int | None
    p95: int | None


def city_day(session: Session) -> ColumnElement[Any]:
    """The call's day in the city (UTC+8)."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone(CITY_ZONE, _a.c.at), Date)
    return func.date(_a.c.at, "+8 hours")


def _key(session: Session, group: str | None) -> ColumnElement[Any] | None:
    return {
        None: None, "service": _a.c.service, "provider": _prov.c.code, "consumer": _a.c.system,
        "consumer_org": _a.c.org, "mode": _a.c.mode, "day": city_day(session) if group == "day" else None,
    }[group]


def aggregates(session: Session, since: datetime, until: datetime, group: str | None, *,
               scope: Scope | None = None, limit: int | None = None) -> list[Aggregate]:
    """Calls, failures (status ≥ 400), records, bytes, latency sum and p50/p95 per group key
    (one row with key None when `group` is None) for calls with since ≤ at < until. Bytes include
    the bodies of exports, which their `delivery` records count (a call's own record cannot)."""
    key = _key(session, group)
    latency = func.coalesce(_a.c.latency_ms, 0)
    source, where = _source(group, scope, "call", since, until)
    calls = select(
        (key if key is not None else literal(None)).label("k"),
        case((func.coalesce(_a.c.status, 0) >= 400, 1), else_=0).label("failed"),
        func.coalesce(_a.c.records, 0).label("records"),
        func.coalesce(_a.c.bytes, 0).label("nbytes"),
        latency.label("latency"),
    ).select_from(source).where(*where).subquery("calls")
    c = calls.c
    # One row per group and distinct latency: far fewer rows than calls to order for the ranks.
    histogram = select(c.k, c.latency, func.count().label("n"), func.sum(c.failed).label("failed"),
                       func.sum(c.records).label("records"), func.sum(c.nbytes).label("nbytes"),
                       ).group_by(c.k, c.latency).subquery("histogram")
    h = histogram.c
    partition = [h.k] if key is not None else None
    cumulative = select(
        h.k, h.latency, h.n, h.failed, h.records, h.nbytes,
        func.sum(h.n).over(partition_by=partition, order_by=h.latency, rows=(None, 0)).label("running"),
        cast(func.sum(h.n).over(partition_by=partition), BigInteger).label("total"),  # PostgreSQL: sum is numeric
    ).subquery("cumulative")
    r = cumulative.c
    calls_count = func.sum(r.n)
    stmt = select(
        r.k, calls_count.label("calls"), func.sum(r.failed).label("failed"),
        func.sum(r.records).label("records"), func.sum(r.nbytes).label("nbytes"),
        func.sum(r.n * r.latency).label("latency_sum"),
        # nearest rank: the smallest latency whose running count reaches ceil(p/100 · n)
        func.min(case((r.running >= (r.total + 1) // 2, r.latency))).label("p50"),
        func.min(case((r.running >= (95 * r.total + 99) // 100, r.latency))).label("p95"),
    ).group_by(r.k)
    stmt = stmt.order_by(r.k) if group == "day" else stmt.order_by(calls_count.desc(), r.k)
    if limit is not None:
        stmt = stmt.limit(limit)
    out = []
    for row in session.execute(stmt):
        out.append(Aggregate(key=_key_text(row.k), calls=int(row.calls), failed=int(row.failed or 0),
                             records=int(row.records or 0), bytes=int(row.nbytes or 0),
                             latency_sum=int(row.latency_sum or 0),
                             p50=None if row.p50 is None else int(row.p50),
                             p95=None if row.p95 is None else int(row.p95)))
    return _with_delivered(out, _delivered_bytes(session, since, until, group, scope), limit)


def _source(group: str | None, scope: Scope | None, kind: str, since: datetime, until: datetime
            ) -> tuple[FromClause, list[ColumnElement[bool]]]:
    source: FromClause = _a
    if group == "provider" or scope is not None:
        source = _a.outerjoin(_svc, _svc.c.code == _a.c.service).outerjoin(_prov, _prov.c.id == _svc.c.provider_org_id)
    where: list[ColumnElement[bool]] = [_a.c.kind == kind, _a.c.at >= since, _a.c.at < until]
    if scope is not None:
        where.append(or_(_a.c.org == scope.org_code, _svc.c.provider_org_id == scope.org_id))
    return source, where


def _key_text(k: Any) -> str | None:
    if isinstance(k, date):
        k = k.isoformat()
    return None if k is None else str(k)


def _delivered_bytes(session: Session, since: datetime, until: datetime, group: str | None,
                     scope: Scope | None) -> dict[str | None, int]:
    """Export bytes per group key, from the delivery records in the range."""
    key = _key(session, group)
    source, where = _source(group, scope, "delivery", since, until)
    k = (key if key is not None else literal(None)).label("k")
    stmt = select(k, func.sum(func.coalesce(_a.c.bytes, 0)).label("nbytes")).select_from(source).where(*where)
    stmt = stmt.group_by(k) if key is not None else stmt
    return {_key_text(row.k): int(row.nbytes or 0) for row in session.execute(stmt) if row.nbytes}


def _with_delivered(out: list[Aggregate], delivered: dict[str | None, int], limit: int | None) -> list[Aggregate]:
    """`out` with each group's export bytes added; a group with deliveries but no call in the
    range (an export that ended after midnight) gets a row of its own unless `limit` cut the list."""
    if not delivered:
        return out
    merged = [replace(a, bytes=a.bytes + delivered.pop(a.key, 0)) for a in out]
    room = len(delivered) if limit is None else max(0, limit - len(merged))
    merged += [Aggregate(key=k, calls=0, failed=0, records=0, bytes=n, latency_sum=0, p50=None, p95=None)
               for k, n in list(delivered.items())[:room]]
    return merged


# -- labels of group keys ----------------------------------------------------------------------

def service_labels(session: Session, codes: Sequence[str]) -> dict[str, tuple[str, str, str]]:
    """code → (service name, provider code, provider name)."""
    if not codes:
        return {}
    org = Organization.metadata.tables["organizations"]
    s = Service.metadata.tables["exchange_services"]
    rows = session.execute(select(s.c.code, s.c.name, org.c.code, org.c.name)
                           .join(org, org.c.id == s.c.provider_org_id).where(s.c.code.in_(list(codes))))
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def system_labels(session: Session, codes: Sequence[str]) -> dict[str, tuple[str, str, str]]:
    """code → (system name, organization code, organization name)."""
    if not codes:
        return {}
    org = Organization.metadata.tables["organizations"]
    s = System.metadata.tables["exchange_systems"]
    rows = session.execute(select(s.c.code, s.c.name, org.c.code, org.c.name)
                           .join(org, org.c.id == s.c.org_id).where(s.c.code.in_(list(codes))))
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def org_names(session: Session, codes: Sequence[str]) -> dict[str, str]:
    if not codes:
        return {}
    org = Organization.metadata.tables["organizations"]
    return {r[0]: r[1] for r in session.execute(select(org.c.code, org.c.name).where(org.c.code.in_(list(codes))))}


# -- headline figures --------------------------------------------------------------------------

def published_services(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Service).where(Service.status == "published")) or 0)


def connected_departments(session: Session, now: datetime) -> tuple[int, int, int]:
    """(departments connected, consumer departments, provider departments): organizations with a
    system holding an active grant, and organizations providing a published service."""
    g, s, svc = (Grant.metadata.tables["exchange_grants"], System.metadata.tables["exchange_systems"],
                 Service.metadata.tables["exchange_services"])
    consumers = (select(s.c.org_id.label("org_id")).join(g, g.c.system_id == s.c.id)
                 .where(g.c.revoked_at.is_(None), g.c.expires_at > now))
    providers = select(svc.c.provider_org_id.label("org_id")).where(svc.c.status == "published")
    both = union(consumers, providers).subquery()
    total = int(session.scalar(select(func.count(distinct(both.c.org_id)))) or 0)
    n_consumers = int(session.scalar(select(func.count(distinct(consumers.subquery().c.org_id)))) or 0)
    n_providers = int(session.scalar(select(func.count(distinct(providers.subquery().c.org_id)))) or 0)
    return total, n_consumers, n_providers


def active_grants(session: Session, now: datetime, org_id: int | None = None) -> int:
    stmt = select(func.count()).select_from(Grant).where(Grant.revoked_at.is_(None), Grant.expires_at > now)
    if org_id is not None:
        stmt = stmt.where(or_(Grant.consumer_org_id == org_id, Grant.provider_org_id == org_id))
    return int(session.scalar(stmt) or 0)
