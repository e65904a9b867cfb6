"""Grants (授权): what one system may receive from one service — fields, a row filter,
masking per field, a rate limit, a daily quota — until when. Made on an application's final
approval; a newer grant for the same system and service supersedes the older one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.catalog.models import Resource
from onceonly.db import utcnow
from onceonly.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from onceonly.exchange import repository as repo
from onceonly.exchange.models import Application, Grant
from onceonly.exchange.schemas import GrantOut
from onceonly.exchange.staff_audit import audit
from onceonly.kit.masking import RULE_FOR_CHECK, MaskingRuleError, rule

CITY_TZ = timezone(timedelta(hours=8), "UTC+8")  # the city's day: quotas reset and grants end at its midnight
DEFAULT_RATE_LIMIT = 60
FILTER_TYPES = ("string", "integer", "boolean")
MAX_FILTER_VALUES = 100
PERSONAL = ("personal", "sensitive")


def city_today(now: datetime | None = None) -> date:
    return (now or utcnow()).astimezone(CITY_TZ).date()


def end_of_day(day: date) -> datetime:
    """The instant a grant valid through `day` ends: the next midnight in the city, as UTC."""
    return datetime.combine(day + timedelta(days=1), time(0), CITY_TZ).astimezone(UTC)


def personal_fields(res: Resource, names: Sequence[str]) -> list[str]:
    return [f.name for f in res.fields if f.name in names and f.sensitivity in PERSONAL]


# -- terms -------------------------------------------------------------------------------------

def check_row_filter(res: Resource, raw: Mapping[str, Any]) -> dict[str, list[Any]]:
    """{field: value or [values]} on the resource's key or query fields (indexed), of string,
    integer or boolean type; every condition must hold. Stored as lists."""
    indexed = {*res.key_fields, *res.query_fields}
    by_name = {f.name: f for f in res.fields}
    out: dict[str, list[Any]] = {}
    for name, value in raw.items():
        where = f"row_filter.{name}"
        f = by_name.get(name)
        if f is None or name not in indexed:
            raise ValidationFailed(f"row filter field {name} must be a key or query field of resource {res.code}",
                                   field=where)
        if f.type not in FILTER_TYPES:
            raise ValidationFailed(f"row filter field {name} is {f.type}; filters take {', '.join(FILTER_TYPES)}",
                                   field=where)
        values = value if isinstance(value, list) else [value]
        if not values or len(values) > MAX_FILTER_VALUES:
            raise ValidationFailed(f"row filter {name} takes 1-{MAX_FILTER_VALUES} values", field=where)
        for v in values:
            if not _fits(f.type, v):
                raise ValidationFailed(f"row filter {name}: {str(v)[:40]!r} is not a {f.type} value", field=where)
        out[name] = list(dict.fromkeys(values))
    return out


def _fits(kind: str, value: Any) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":  # within BIGINT, or the database would refuse the query
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    return isinstance(value, str)


def check_masking(res: Resource, fields: Sequence[str], raw: Mapping[str, str]) -> dict[str, str]:
    for name, spec in raw.items():
        if name not in fields:
            raise ValidationFailed(f"masking names field {name}, which is not among the granted fields",
                                   field=f"masking.{name}")
        try:
            rule(spec)
        except MaskingRuleError as exc:
            raise ValidationFailed(str(exc), field=f"masking.{name}") from None
    return {f: raw[f] for f in fields if f in raw}


def default_masking(res: Resource, fields: Sequence[str]) -> dict[str, str]:
    """Personal fields with a built-in check get its rule (citizen ID, mobile, USCC) unless the
    deciders set masking explicitly."""
    return {f.name: RULE_FOR_CHECK[f.check] for f in res.fields
            if f.name in fields and f.sensitivity in PERSONAL and f.check in RULE_FOR_CHECK}


def effective_terms(res: Resource, app: Application, fields: Sequence[str]) -> dict[str, Any]:
    """The grant terms from what the deciders set, defaults filling the rest."""
    terms = app.terms or {}
    masking = terms.get("masking")
    return {
        "row_filter": check_row_filter(res, terms.get("row_filter") or {}),
        "masking": check_masking(res, fields, masking) if masking is not None else default_masking(res, fields),
        "rate_limit": int(terms.get("rate_limit") or DEFAULT_RATE_LIMIT),
        "daily_quota": int(terms.get("daily_quota") or app.expected_volume),
    }


# -- lifecycle ---------------------------------------------------------------------------------

def create_grant(session: Session, actor: Actor, app: Application, res: Resource) -> Grant:
    """The grant of an approved application; older live grants of the pair are superseded."""
    fields = list(app.fields_approved or [])
    terms = effective_terms(res, app, fields)
    now = utcnow()
    superseded = []
    for old in repo.live_grants(session, app.system_id, app.service_id):
        old.revoked_at, old.revoked_by = now, actor.username
        old.revoke_reason = f"superseded by the grant of application {app.id}"
        superseded.append(old.id)
    grant = Grant(system_id=app.system_id, service_id=app.service_id, application_id=app.id,
                  consumer_org_id=app.consumer_org_id, provider_org_id=app.provider_org_id, fields=fields,
                  expires_at=end_of_day(app.expires_on), created_at=now, **terms)
    session.add(grant)
    session.flush()
    app.grant_id = grant.id
    audit(session, actor, "exchange.grant.create", f"grant:{grant.id}",
          {"application": app.id, "system": app.system.code, "fields": fields, **terms,
           "expires_at": grant.expires_at.isoformat(), "superseded": superseded}, service=app.service.code)
    return grant


def get_grant(session: Session, actor: Actor, grant_id: int) -> Grant:
    """A grant either side (or the platform) may see; to anyone else it does not exist."""
    grant = repo.grant_by_id(session, grant_id)
    if grant is None or not _may_see(actor, grant):
        raise NotFound(f"grant {grant_id} not found", field="grant_id")
    return grant


def _may_see(actor: Actor, grant: Grant) -> bool:
    return actor.can("exchange.read", grant.consumer_org_id) or actor.can("exchange.read", grant.provider_org_id)


def list_grants(session: Session, actor: Actor, *, system_id: int | None = None, service_id: int | None = None,
                include_revoked: bool = False, offset: int = 0, limit: int = 100) -> tuple[Sequence[Grant], int]:
    if not actor.can("exchange.read"):
        raise PermissionDenied(f"role {actor.role} may not read exchange grants")
    return repo.grants(session, actor, system_id=system_id, service_id=service_id,
                       include_revoked=include_revoked, offset=offset, limit=limit)


def revoke_grant(session: Session, actor: Actor, grant: Grant, reason: str) -> Grant:
    """The provider (its reviewers and admin), the platform operator or the consumer giving it
    up may revoke; it takes effect at the next call."""
    if not (actor.can("exchange.review", grant.provider_org_id) or actor.can("exchange.operate")
            or actor.can("exchange.apply", grant.consumer_org_id) or actor.can("system.manage", grant.consumer_org_id)):
        raise PermissionDenied(f"role {actor.role} may not revoke this grant")
    if grant.revoked_at is not None:
        raise Conflict(f"grant {grant.id} is already revoked", field="grant_id")
    if not reason.strip():
        raise ValidationFailed("say why the grant is revoked", field="reason")
    grant.revoked_at, grant.revoked_by, grant.revoke_reason = utcnow(), actor.username, reason.strip()
    session.flush()
    audit(session, actor, "exchange.grant.revoke", f"grant:{grant.id}", {"reason": grant.revoke_reason},
          service=grant.service.code)
    return grant


def grant_status(grant: Grant, now: datetime | None = None) -> str:
    if grant.revoked_at is not None:
        return "revoked"
    return "expired" if grant.expires_at <= (now or utcnow()) else "active"


def grant_out(session: Session, grant: Grant, now: datetime | None = None) -> GrantOut:
    from onceonly.exchange.enforcement import day_bucket

    now = now or utcnow()
    used = repo.usage(session, grant.id, "day", day_bucket(now))[1]
    return GrantOut(
        id=grant.id, system=grant.system.code, consumer_org=grant.system.org.code, service=grant.service.code,
        mode=grant.service.mode, provider_org=grant.service.provider.code, application_id=grant.application_id,
        fields=list(grant.fields), row_filter=dict(grant.row_filter or {}), masking=dict(grant.masking or {}),
        rate_limit=grant.rate_limit, daily_quota=grant.daily_quota, used_today=used, expires_at=grant.expires_at,
        status=grant_status(grant, now),
        created_at=grant.created_at, revoked_at=grant.revoked_at,
        revoked_by=grant.revoked_by, revoke_reason=grant.revoke_reason,
    )
