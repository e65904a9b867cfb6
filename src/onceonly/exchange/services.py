"""Services: a provider publishes one of its resources in one sharing mode (verify, query,
api, bulk), exposing a chosen set of fields. Change feeds and subscriptions ride on bulk.
Services follow the resource across versions: calls use its newest published version."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.catalog import repository as catalog_repo
from onceonly.catalog.codelists import get_code_list
from onceonly.catalog.models import Resource
from onceonly.catalog.service import get_resource
from onceonly.catalog.vocab import LABELS
from onceonly.db import utcnow
from onceonly.errors import Conflict, NotFound, PlatformError, ValidationFailed
from onceonly.exchange import repository as repo
from onceonly.exchange.models import Service
from onceonly.exchange.schemas import SERVICE_CODE_RE, CodeListRef, ServiceField, ServiceIn, ServiceOut
from onceonly.exchange.staff_audit import audit
from onceonly.exchange.systems import checked_code

MODES = ("verify", "query", "api", "bulk")
FEEDS = {"changes": "bulk", "subscription": "bulk"}  # call modes that ride on a bulk service
CALL_MODES = (*MODES, *FEEDS)
SERVICE_STATUSES = ("draft", "published", "retired")


def check_code(code: str) -> str:
    return checked_code(code, "service", SERVICE_CODE_RE, "letters, digits, '_', '-'")


def get_service(session: Session, code: str) -> Service:
    service = repo.service_by_code(session, code.strip()) if len(code) <= 40 else None
    if service is None:
        raise NotFound(f"service {code[:40]} not found", field="service")
    return service


def current_resource(session: Session, service: Service) -> Resource | None:
    """The newest published version of the service's resource (None if none is published)."""
    res = catalog_repo.resource_by_code(session, service.resource.code)
    return res if res is not None and res.status == "published" else None


def publish_service(session: Session, actor: Actor, data: ServiceIn) -> Service:
    """Offer a published, shareable resource in one of its share modes."""
    try:
        res = get_resource(session, data.resource)
    except NotFound:
        raise NotFound(f"resource {data.resource} not found", field="resource") from None
    actor.require("service.publish", res.provider_id)
    if res.status != "published":
        raise ValidationFailed(f"resource {res.code} is {res.status}; only a published resource gets a service",
                               field="resource")
    if res.share_type == "none":
        raise ValidationFailed(f"resource {res.code} is not shared (不予共享); it cannot get a service",
                               field="resource")
    if data.mode not in res.share_modes:
        raise ValidationFailed(f"resource {res.code} is shared by {', '.join(res.share_modes) or 'no mode'}, "
                               f"not {data.mode}", field="mode")
    fields = _check_fields(res, data.fields)
    code = check_code(data.code) if data.code else _next_code(session)
    if repo.service_by_code(session, code):
        raise Conflict(f"service {code} already exists", field="code")
    now = utcnow()
    service = Service(code=code, name=data.name.strip(), description=data.description.strip(), resource_id=res.id,
                      provider_org_id=res.provider_id, mode=data.mode, fields=fields,
                      status="draft" if data.draft else "published", published_at=None if data.draft else now)
    session.add(service)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:  # a concurrent publish took the same generated code
        raise Conflict(f"service {code} was just created by someone else; retry", field="code") from None
    audit(session, actor, "exchange.service.create", f"service:{code}",
          {"resource": res.code, "mode": data.mode, "fields": fields, "status": service.status}, service=code)
    return service


def _check_fields(res: Resource, names: Sequence[str]) -> list[str]:
    known = [f.name for f in res.fields]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValidationFailed(f"resource {res.code} has no field {unknown[0]}", field="fields")
    if len(set(names)) != len(names):
        raise ValidationFailed("fields are listed twice", field="fields")
    return [n for n in known if n in names]  # in the resource's order


def _next_code(session: Session) -> str:
    number = repo.max_service_id(session) + 1
    while repo.service_by_code(session, f"S{number:04d}"):
        number += 1
    return f"S{number:04d}"


def set_status(session: Session, actor: Actor, service: Service, status: str) -> Service:
    """draft → published → retired. A retired service answers no call; grants stay for the record."""
    actor.require("service.publish", service.provider_org_id)
    allowed = {"published": ("draft",), "retired": ("draft", "published")}
    if status not in allowed or service.status not in allowed[status]:
        raise Conflict(f"service {service.code} is {service.status}; it cannot become {status}", field="status")
    if status == "published":
        res = current_resource(session, service)
        if res is None or res.share_type == "none":
            raise Conflict(f"resource of service {service.code} is not published and shared", field="resource")
        service.published_at = utcnow()
    service.status = status
    session.flush()
    audit(session, actor, f"exchange.service.{'publish' if status == 'published' else 'retire'}",
          f"service:{service.code}", service=service.code)
    return service


def list_services(session: Session, *, provider_org_id: int | None = None, mode: str | None = None,
                  status: str | None = None) -> Sequence[Service]:
    return repo.services(session, provider_org_id=provider_org_id, mode=mode, status=status)


def service_out(session: Session, service: Service) -> ServiceOut:
    res = current_resource(session, service) or service.resource
    by_name = {f.name: f for f in res.fields}
    fields = []
    for name in service.fields:
        f = by_name.get(name)
        if f is None:  # dropped by a newer version of the resource
            continue
        fields.append(ServiceField(name=f.name, title=f.title, type=f.type, length=f.length,
                                   sensitivity=f.sensitivity, code_list=_code_list_ref(session, f.code_list)))
    return ServiceOut(code=service.code, name=service.name, description=service.description, mode=service.mode,
                      mode_label=LABELS["share_mode"].get(service.mode, service.mode), status=service.status,
                      provider=service.provider.code, provider_name=service.provider.name, resource=res.code,
                      resource_title=res.title, resource_version=res.version, share_type=res.share_type,
                      share_condition=res.share_condition, fields=fields, published_at=service.published_at)


def _code_list_ref(session: Session, code: str | None) -> CodeListRef | None:
    if not code:
        return None
    try:
        cl = get_code_list(session, code)
    except PlatformError:
        return CodeListRef(code=code, name="", codes_url=f"/api/v1/code-lists/{code}/codes")
    return CodeListRef(code=cl.code, name=cl.name, codes_url=f"/api/v1/code-lists/{cl.code}/codes")
