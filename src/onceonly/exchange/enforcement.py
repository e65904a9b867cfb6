"""Enforcement on every exchange call, for the data endpoints (verify, query, api, bulk and the
feeds) to build on:

    system = ExchangeCaller                                  (caller.py: key, then signature)
    permit = authorize(session, system, "S0001", "query", ["name", "phone"])
    stmt   = select(...).where(row_filter_clause(permit, table))
    rows   = [apply_masking(permit, r) for r in rows]        (granted fields only, masked)
    record_usage(session, permit, len(rows))                 (before the answer goes out)

Denials are typed errors (errors.py) that say why and carry no data. Counting is done with
atomic upserts in the caller's transaction, so several worker processes sharing one database
count together: calls per minute in `authorize` (rate limit), records per day in
`record_usage` (quota). A denied call's transaction rolls back and counts nothing. The counter
row stays locked (PostgreSQL) until the transaction ends, so keep the enforcing transaction
short; a long export should authorize and record in short units of work of its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, and_, true
from sqlalchemy.orm import Session

from onceonly.db import utcnow
from onceonly.errors import ValidationFailed
from onceonly.exchange import repository as repo
from onceonly.exchange import snapshot
from onceonly.exchange.errors import (
    FieldNotGranted,
    GrantExpired,
    GrantMissing,
    GrantRevoked,
    ModeNotOffered,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
    Throttled,
)
from onceonly.exchange.grants import CITY_TZ, city_today
from onceonly.exchange.models import System
from onceonly.exchange.schemas import FIELD_NAME_RE, SERVICE_CODE_RE
from onceonly.exchange.services import CALL_MODES, FEEDS
from onceonly.kit.masking import mask

MINUTE_HISTORY = 60  # minute counters older than this many minutes are pruned


@dataclass(frozen=True)
class Permit:
    """What an authorized call may return (read-only). `fields` are in the resource's order."""

    grant_id: int
    system_id: int
    system_code: str
    service_id: int
    service_code: str
    mode: str  # as called: verify, query, api, bulk, changes or subscription
    resource_id: int  # the newest published version of the service's resource
    resource_code: str
    fields: tuple[str, ...]
    masking: Mapping[str, str] = field(default_factory=dict)  # field -> rule name (kit.masking)
    row_filter: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # field -> allowed values; all hold
    rate_limit: int = 0  # calls per minute
    daily_quota: int = 0  # records per day (UTC+8)
    used_today: int = 0  # records answered today before this call
    expires_at: datetime | None = None

    @property
    def remaining_today(self) -> int:
        """Records this call may still return; cap an answer at this."""
        return max(0, self.daily_quota - self.used_today)


def minute_bucket(now: datetime) -> int:
    return int(now.timestamp()) // 60


def day_bucket(now: datetime) -> int:
    return city_today(now).toordinal()


def seconds_to_midnight(now: datetime) -> int:
    local = now.astimezone(CITY_TZ)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - local).total_seconds()))


def authorize(
    session: Session, system: System, service_code: str, mode: str,
    requested_fields: Sequence[str] | None = None, *, now: datetime | None = None, count: bool = True,
    read_usage: bool = True,
) -> Permit:
    """Find the system's grant for the service and check it: mode, expiry, fields, quota, rate.
    `requested_fields` None means every granted field. Counts one call for the rate limit unless
    `count` is false: then the caller counts it with a `Charge` when it commits the call. With
    `read_usage` false today's usage is not read (`used_today` is 0): only for a call whose
    Charge refuses it if the quota is used up, and that does not cap its answer by the quota."""
    now = now or utcnow()
    if not isinstance(service_code, str) or not SERVICE_CODE_RE.match(service_code):
        raise ValidationFailed("service: not a service code", field="service")
    if mode not in CALL_MODES:
        raise ValidationFailed(f"mode must be one of {', '.join(CALL_MODES)}", field="mode")
    if requested_fields is not None and not all(isinstance(n, str) and FIELD_NAME_RE.match(n)
                                                for n in requested_fields):
        raise ValidationFailed("fields: not a field name", field="fields")
    terms = snapshot.derived(session, ("terms", system.id, service_code, mode),
                             lambda: _terms(session, system, service_code, mode))
    if terms.expires_at is not None and terms.expires_at <= now:
        raise GrantExpired(f"the grant of system {system.code} for service {terms.service_code} expired at "
                           f"{terms.expires_at.astimezone(CITY_TZ):%Y-%m-%d %H:%M} (UTC+8)")
    if requested_fields is not None:
        fields = tuple(_requested(requested_fields, list(terms.fields), terms.service_code))
        if not fields:
            raise FieldNotGranted(f"no granted field of service {terms.service_code} is available", field="fields")
        terms = replace(terms, fields=fields,
                        masking=MappingProxyType({f: r for f, r in terms.masking.items() if f in fields}))
    used = repo.usage(session, terms.grant_id, "day", day_bucket(now))[1] if read_usage else 0
    if used >= terms.daily_quota:
        raise _used_up(terms, now)
    permit = terms if used == terms.used_today else replace(terms, used_today=used)  # frozen: sharing is safe
    if count:
        count_call(session, permit, now)
    return permit


def _terms(session: Session, system: System, service_code: str, mode: str) -> Permit:
    """What does not change from call to call (until metadata does): the grant's terms over the
    service's current resource, as a permit for every granted field with nothing used yet.
    Cached per process with the metadata (snapshot.derived)."""
    service = snapshot.service(session, service_code)
    grant = snapshot.grant(session, system.id, service.id) if service is not None else None
    if service is None or grant is None:
        raise GrantMissing(f"system {system.code} has no grant for service {service_code}")
    if grant.revoked_at is not None:
        raise GrantRevoked(f"the grant of system {system.code} for service {service.code} was revoked on "
                           f"{grant.revoked_at.astimezone(CITY_TZ):%Y-%m-%d}")
    if service.status != "published":
        raise ServiceUnavailable(f"service {service.code} is {service.status}")
    if FEEDS.get(mode, mode) != service.mode:
        raise ModeNotOffered(f"service {service.code} is a {service.mode} service; it does not answer {mode}",
                             field="mode")
    res = snapshot.current_resource(session, service.resource.code)
    if res is None:
        raise ServiceUnavailable(f"service {service.code} has no published resource behind it")
    names = {f.name for f in res.fields}
    if any(f not in names for f in grant.row_filter or {}):
        raise ServiceUnavailable(f"the row filter of the grant for service {service.code} no longer fits the "
                                 "resource; the provider must review the grant")
    allowed = set(grant.fields) & set(service.fields)
    fields = tuple(f.name for f in res.fields if f.name in allowed)
    if not fields:
        raise FieldNotGranted(f"no granted field of service {service.code} is available", field="fields")
    return Permit(
        grant_id=grant.id, system_id=system.id, system_code=system.code, service_id=service.id,
        service_code=service.code, mode=mode, resource_id=res.id, resource_code=res.code, fields=fields,
        masking=MappingProxyType({f: r for f, r in (grant.masking or {}).items() if f in fields}),
        row_filter=MappingProxyType({f: tuple(v) for f, v in (grant.row_filter or {}).items()}),
        rate_limit=grant.rate_limit, daily_quota=grant.daily_quota, used_today=0, expires_at=grant.expires_at,
    )


def count_call(session: Session | Connection, permit: Permit, now: datetime) -> int:
    """Count one call against the grant's rate limit; RateLimited (nothing counted, once the
    transaction rolls back) when it would pass it. Returns the minute's calls."""
    minute = minute_bucket(now)
    calls, _ = repo.add_usage(session, permit.grant_id, "minute", minute, 1, 0)
    if calls == 1:  # the first call of a minute clears out old minutes
        repo.prune_usage(session, permit.grant_id, "minute", minute - MINUTE_HISTORY)
    if calls > permit.rate_limit:
        raise _rate_limited(permit, now)
    return calls


def _rate_limited(permit: Permit, now: datetime) -> RateLimited:
    return RateLimited(f"the rate limit of {permit.rate_limit} calls per minute for service {permit.service_code} "
                       "is reached", retry_after=60 - int(now.timestamp()) % 60)


def _used_up(permit: Permit, now: datetime) -> QuotaExceeded:
    return QuotaExceeded(f"the daily quota of {permit.daily_quota} records for service {permit.service_code} is "
                         "used up; it resets at 00:00 UTC+8", retry_after=seconds_to_midnight(now))


def _quota_passed(permit: Permit, records: int, used: int, now: datetime) -> QuotaExceeded:
    left = max(0, permit.daily_quota - used)
    return QuotaExceeded(f"an answer of {records} records would pass the daily quota of {permit.daily_quota} "
                         f"for service {permit.service_code} ({left} left today)", retry_after=seconds_to_midnight(now))


def _requested(requested: Sequence[str], granted: list[str], service_code: str) -> list[str]:
    """The requested fields in resource order; the first one not granted is named (whether it
    exists or not is not told)."""
    wanted = set()
    for name in requested:
        if name not in granted:
            raise FieldNotGranted(f"field {name} is not granted for service {service_code}", field=name)
        wanted.add(name)
    return [f for f in granted if f in wanted]


def record_usage(session: Session | Connection, permit: Permit, records: int, *, now: datetime | None = None) -> int:
    """Count an answered call and its records against today's quota; returns today's total.
    Call it before the answer goes out: if the records would pass the quota it raises
    QuotaExceeded and the transaction (with the answer) must be dropped."""
    if records < 0:
        raise ValueError("records must not be negative")
    now = now or utcnow()
    _, total = repo.add_usage(session, permit.grant_id, "day", day_bucket(now), 1, records)
    if total > permit.daily_quota:
        raise _quota_passed(permit, records, total - records, now)
    return total


Counter = tuple[int, str, int]  # grant id, period, bucket


@dataclass(eq=False)
class Charge:
    """The counting of one answered call, done by the audit writer in the transaction that
    commits the call's record (`settle`): the call is counted for the rate limit (unless it was
    when it began) and its records against today's quota, or, if that would pass either,
    nothing is counted and `denial` says why. So counting, record and answer commit together
    without the request holding a counter row or the write lock."""

    permit: Permit
    records: int
    now: datetime
    count_call: bool = True
    total: int = 0  # today's records after this call
    denial: Throttled | None = None

    @property
    def minute(self) -> Counter:
        return self.permit.grant_id, "minute", minute_bucket(self.now)

    @property
    def day(self) -> Counter:
        return self.permit.grant_id, "day", day_bucket(self.now)

    @staticmethod
    def settle(conn: Connection, charges: Sequence[Charge]) -> None:
        """Count a group of calls: each counter row is upserted once for the whole group, in key
        order (so writers of several processes never wait on each other's rows); the calls are
        then admitted in the order they came, and what a denied call added is taken back."""
        added: dict[Counter, list[int]] = {}
        for charge in charges:
            if charge.count_call:
                added.setdefault(charge.minute, [0, 0])[0] += 1
            tally = added.setdefault(charge.day, [0, 0])
            tally[0] += 1
            tally[1] += charge.records
        before: dict[Counter, tuple[int, int]] = {}
        for key, (calls, records) in sorted(added.items()):
            after = repo.add_usage(conn, *key, calls, records)
            before[key] = (after[0] - calls, after[1] - records)
        running = dict(before)
        refund: dict[Counter, list[int]] = {}
        for charge in charges:
            permit, minute, day = charge.permit, charge.minute, charge.day
            calls_now = running[minute][0] + 1 if charge.count_call else 0
            used = running[day][1]
            if calls_now > permit.rate_limit:
                charge.denial = _rate_limited(permit, charge.now)
            elif used >= permit.daily_quota:  # as `authorize` says: not even an empty answer
                charge.denial = _used_up(permit, charge.now)
            elif used + charge.records > permit.daily_quota:
                charge.denial = _quota_passed(permit, charge.records, used, charge.now)
            if charge.denial is None:
                if charge.count_call:
                    running[minute] = (calls_now, 0)
                running[day] = (running[day][0] + 1, used + charge.records)
                charge.total = used + charge.records
                continue
            if charge.count_call:
                refund.setdefault(minute, [0, 0])[0] -= 1
            back = refund.setdefault(day, [0, 0])
            back[0] -= 1
            back[1] -= charge.records
        for key, (calls, records) in sorted(refund.items()):
            repo.add_usage(conn, *key, calls, records)
        for grant_id, period, bucket in sorted(before):
            if period == "minute" and before[(grant_id, period, bucket)][0] == 0:  # a new minute: drop old ones
                repo.prune_usage(conn, grant_id, "minute", bucket - MINUTE_HISTORY)


def apply_masking(permit: Permit, row: Mapping[str, Any]) -> dict[str, Any]:
    """The row reduced to the permitted fields (in their order), each masked by its rule."""
    out: dict[str, Any] = {}
    for name in permit.fields:
        if name in row:
            rule = permit.masking.get(name)
            out[name] = mask(row[name], rule) if rule else row[name]
    return out


def row_filter_clause(permit: Permit, table: Table) -> ColumnElement[bool]:
    """The grant's row filter as a parameterized condition on the resource's table (true()
    when there is none): equality for one value, IN for several, all ANDed."""
    conditions = [table.c[name] == values[0] if len(values) == 1 else table.c[name].in_(values)
                  for name, values in permit.row_filter.items()]
    return and_(true(), *conditions)


def row_allowed(permit: Permit, row: Mapping[str, Any]) -> bool:
    """Whether a fetched row (with the filter's fields) passes the row filter."""
    return all(row.get(name) in values for name, values in permit.row_filter.items())
