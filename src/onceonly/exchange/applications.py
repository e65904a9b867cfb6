"""Applications (共享申请) and their decisions.

- Unconditional resources: approved at once when every requested field is public or internal.
- Otherwise the provider's reviewer (or department admin) decides first: approve, approve
  fewer fields (narrow), or reject with a reason.
- Personal or sensitive fields then also need the platform operator's approval.
- The final approval creates the grant. Every step is kept with who, when and why, and audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.catalog.models import Resource
from onceonly.db import utcnow
from onceonly.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from onceonly.exchange import grants
from onceonly.exchange import repository as repo
from onceonly.exchange.models import Application, Decision, Service, System
from onceonly.exchange.schemas import ApplicationIn, ApplicationOut, DecisionIn, DecisionOut, Terms
from onceonly.exchange.services import current_resource
from onceonly.exchange.staff_audit import audit

PENDING = ("pending_provider", "pending_operator")
MAX_VALIDITY = timedelta(days=3 * 366)  # a grant is reviewed again at least every three years
AUTO = Actor(user_id=None, username="auto", role="system", via="rule")  # who took an automatic step


def _resource(session: Session, service: Service) -> Resource:
    res = current_resource(session, service)
    if res is None or service.status != "published":
        raise Conflict(f"service {service.code} is not available (service {service.status}, resource not "
                       "published)", field="service")
    if res.share_type == "none":
        raise Conflict(f"resource of service {service.code} is no longer shared", field="service")
    return res


def apply(session: Session, actor: Actor, system: System, service: Service, data: ApplicationIn) -> Application:
    """A consumer's steward or department admin applies for fields of a service for one system."""
    actor.require("exchange.apply", system.org_id)
    if not system.active:
        raise Conflict(f"system {system.code} is disabled", field="system")
    res = _resource(session, service)
    fields = _subset(data.fields, list(service.fields), "fields", f"service {service.code}")
    today = grants.city_today()
    if data.expires_on <= today or data.expires_on > today + MAX_VALIDITY:
        raise ValidationFailed(f"expires_on must be after today and within {MAX_VALIDITY.days} days",
                               field="expires_on")
    if repo.pending_application(session, system.id, service.id):
        raise Conflict(f"system {system.code} already has a pending application for service {service.code}",
                       field="service")
    personal = grants.personal_fields(res, fields)
    app = Application(
        system_id=system.id, service_id=service.id, consumer_org_id=system.org_id,
        provider_org_id=service.provider_org_id, fields_requested=fields, purpose=data.purpose.strip(),
        legal_basis=data.legal_basis.strip(), expected_volume=data.expected_volume, expires_on=data.expires_on,
        status="pending_provider", needs_operator=bool(personal), terms={}, applicant=actor.username,
    )
    app.system, app.service = system, service
    session.add(app)
    session.flush()
    audit(session, actor, "exchange.application.create", f"application:{app.id}",
          {"system": system.code, "fields": fields, "purpose": app.purpose}, service=service.code)
    if res.share_type == "unconditional" and not personal:
        app.fields_approved = fields
        _step(session, app, AUTO, "auto", "approve", "unconditional resource, no personal fields", fields)
        _approve(session, actor, app, res)
    return app


def _subset(names: Sequence[str], allowed: Sequence[str], where: str, of: str) -> list[str]:
    if not names:
        raise ValidationFailed(f"{where}: name at least one field", field=where)
    if len(set(names)) != len(names):
        raise ValidationFailed(f"{where}: a field is listed twice", field=where)
    for n in names:
        if n not in allowed:
            raise ValidationFailed(f"{where}: {n} is not a field of {of}", field=where)
    return [n for n in allowed if n in names]


def get_application(session: Session, actor: Actor, application_id: int, *, for_update: bool = False) -> Application:
    """Either side (and the platform) may see an application; to anyone else it does not exist."""
    app = repo.application_by_id(session, application_id, for_update=for_update)
    if app is None or not (actor.can("exchange.read", app.consumer_org_id)
                           or actor.can("exchange.read", app.provider_org_id)):
        raise NotFound(f"application {application_id} not found", field="application_id")
    return app


def list_applications(session: Session, actor: Actor, *, view: str = "all", status: str | None = None,
                      offset: int = 0, limit: int = 100) -> tuple[Sequence[Application], int]:
    """view: all (what the actor may see), mine (its organization's systems applied), review
    (waiting for its organization as provider), operate (waiting for the platform operator)."""
    if not actor.can("exchange.read"):
        raise PermissionDenied(f"role {actor.role} may not read exchange applications")
    org = actor.org_id if actor.via != "cli" else None
    if view == "mine":
        if org is None:
            raise ValidationFailed("view mine is for department staff", field="view")
        return repo.applications(session, actor, consumer_org_id=org, status=status, offset=offset, limit=limit)
    if view == "review":
        if org is None or not actor.can("exchange.review", org):
            raise PermissionDenied("the review queue is for the provider's reviewers and department admin")
        return repo.applications(session, actor, provider_org_id=org, status="pending_provider", offset=offset,
                                 limit=limit)
    if view == "operate":
        actor.require("exchange.operate")
        return repo.applications(session, actor, status="pending_operator", offset=offset, limit=limit)
    if view != "all":
        raise ValidationFailed("view must be all, mine, review or operate", field="view")
    return repo.applications(session, actor, status=status, offset=offset, limit=limit)


def decide(session: Session, actor: Actor, app: Application, data: DecisionIn) -> Application:
    """The provider's step, then (for personal fields) the operator's. Approving fewer fields
    than asked narrows; rejecting needs a reason. Terms given here shape the grant."""
    if app.status not in PENDING:
        raise Conflict(f"application {app.id} is {app.status}; nothing to decide", field="status")
    step = "provider" if app.status == "pending_provider" else "operator"
    if step == "provider":
        actor.require("exchange.review", app.provider_org_id)
    else:
        actor.require("exchange.operate")
    reason = data.reason.strip()
    if data.decision == "reject":
        if not reason:
            raise ValidationFailed("a rejection needs a reason", field="reason")
        _step(session, app, actor, step, "reject", reason, None)
        app.status, app.decided_at = "rejected", utcnow()
        audit(session, actor, "exchange.application.reject", f"application:{app.id}", {"step": step, "reason": reason},
              service=app.service.code)
        return app
    res = _resource(session, app.service)
    if app.expires_on <= grants.city_today():
        raise Conflict(f"application {app.id} asked for a grant until {app.expires_on}, which has passed; "
                       "reject it or ask for a new application", field="expires_on")
    before = list(app.fields_approved or app.fields_requested)
    fields = _subset(data.fields, before, "fields", f"application {app.id}") if data.fields else before
    _merge_terms(res, app, data, fields)
    app.fields_approved = fields
    outcome = "narrow" if len(fields) < len(before) else "approve"
    _step(session, app, actor, step, outcome, reason, fields)
    audit(session, actor, f"exchange.application.{outcome}", f"application:{app.id}",
          {"step": step, "fields": fields, "reason": reason, "terms": app.terms}, service=app.service.code)
    app.needs_operator = bool(grants.personal_fields(res, fields))
    if step == "provider" and app.needs_operator:
        app.status = "pending_operator"
        return app
    _approve(session, actor, app, res)
    return app


def _merge_terms(res: Resource, app: Application, data: Terms, fields: list[str]) -> None:
    """Keep the terms set so far, override with those given now, and check them whole."""
    terms: dict[str, Any] = dict(app.terms or {})
    given = data.model_dump(include={"row_filter", "masking", "rate_limit", "daily_quota"}, exclude_none=True)
    terms.update(given)
    if "row_filter" in terms:
        terms["row_filter"] = grants.check_row_filter(res, terms["row_filter"])
    if "masking" in terms:  # narrowing drops the masking of fields no longer granted
        terms["masking"] = grants.check_masking(res, fields, {k: v for k, v in terms["masking"].items()
                                                              if k in fields or k in given.get("masking", {})})
    app.terms = terms


def _approve(session: Session, actor: Actor, app: Application, res: Resource) -> None:
    app.status, app.decided_at = "approved", utcnow()
    grants.create_grant(session, actor, app, res)


def withdraw(session: Session, actor: Actor, app: Application, reason: str = "") -> Application:
    """The consumer takes back a pending application."""
    actor.require("exchange.apply", app.consumer_org_id)
    if app.status not in PENDING:
        raise Conflict(f"application {app.id} is {app.status}; only a pending one can be withdrawn", field="status")
    _step(session, app, actor, "applicant", "withdraw", reason.strip(), None)
    app.status, app.decided_at = "withdrawn", utcnow()
    audit(session, actor, "exchange.application.withdraw", f"application:{app.id}", {"reason": reason.strip()},
          service=app.service.code)
    return app


def _step(session: Session, app: Application, actor: Actor, step: str, outcome: str, reason: str,
          fields: list[str] | None) -> None:
    decision = Decision(step=step, outcome=outcome, username=actor.username, user_id=actor.user_id,
                        reason=reason, fields=fields, at=utcnow())
    app.decisions.append(decision)
    session.flush()


def application_out(session: Session, app: Application) -> ApplicationOut:
    res = current_resource(session, app.service) or app.service.resource
    waiting = {"pending_provider": "provider", "pending_operator": "operator"}.get(app.status)
    return ApplicationOut(
        id=app.id, system=app.system.code, consumer_org=app.system.org.code, service=app.service.code,
        service_name=app.service.name, mode=app.service.mode, provider_org=app.service.provider.code,
        fields_requested=list(app.fields_requested),
        fields_approved=list(app.fields_approved) if app.fields_approved is not None else None,
        personal_fields=grants.personal_fields(res, app.fields_requested), purpose=app.purpose,
        legal_basis=app.legal_basis, expected_volume=app.expected_volume, expires_on=app.expires_on,
        status=app.status, waiting_for=waiting, needs_operator=app.needs_operator,
        terms=dict(app.terms or {}), applicant=app.applicant, created_at=app.created_at, decided_at=app.decided_at,
        grant_id=app.grant_id,
        decisions=[DecisionOut(step=d.step, outcome=d.outcome, username=d.username, reason=d.reason,
                               fields=d.fields, at=d.at) for d in app.decisions],
    )


def expires_default(today: date | None = None) -> date:
    """One year from today: the CLI's default validity."""
    return (today or grants.city_today()) + timedelta(days=365)
