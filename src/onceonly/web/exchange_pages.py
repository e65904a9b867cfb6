"""服务目录: the exchange's published services, a service's page (fields with titles, types and
code lists, an example call per mode), and the steward's form to publish services over one of
the department's published resources."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.accounts.roles import ORG_ROLES
from onceonly.catalog import orgs
from onceonly.catalog import repository as catalog_repo
from onceonly.catalog.models import Resource
from onceonly.catalog.service import get_resource
from onceonly.catalog.vocab import LABELS
from onceonly.deps import DbSession
from onceonly.errors import NotFound, PermissionDenied, PlatformError
from onceonly.exchange import services
from onceonly.exchange.schemas import ServiceIn, ServiceOut
from onceonly.web.catalog_pages import Reader
from onceonly.web.csrf import csrf_guard
from onceonly.web.exchange_examples import examples
from onceonly.web.pages import redirect, render, render_error
from onceonly.web.staff import FormActor, city_time, platform_errors, validation_errors

router = APIRouter(dependencies=[Depends(csrf_guard)], include_in_schema=False)

MODES = ("verify", "query", "api", "bulk")
CODES_SHOWN = 12
PUBLISH_FIELDS = ("resource", "modes", "fields", "name", "description", "code")
MAX_RESOURCES = 500


@dataclass(frozen=True)
class CodeSample:
    code: str
    name: str
    codes: list[tuple[str, str]]
    more: int


def code_samples(session: Session, svc: ServiceOut) -> dict[str, CodeSample]:
    """The first codes of each code list the service's fields use (the rest through the API)."""
    out: dict[str, CodeSample] = {}
    for f in svc.fields:
        ref = f.code_list
        if ref is None or ref.code in out:
            continue
        cl = catalog_repo.code_list_by_code(session, ref.code)
        codes = list(catalog_repo.codes_of(session, cl.id, current_only=True)) if cl else []
        out[ref.code] = CodeSample(ref.code, ref.name, [(c.code, c.name) for c in codes[:CODES_SHOWN]],
                                   max(0, len(codes) - CODES_SHOWN))
    return out


def may_publish(actor: Actor) -> bool:
    return actor.can("service.publish")


# -- the catalogue -----------------------------------------------------------------------------

@router.get("/exchange/services")
def services_page(request: Request, session: DbSession, actor: Reader, provider: str = "", mode: str = "",
                  q: str = "") -> Response:
    provider, mode, q = provider.strip()[:18], mode.strip(), q.strip()[:100]
    notice = None
    org_id = None
    if provider:
        try:
            org_id = orgs.get_org(session, provider).id
        except NotFound as exc:
            notice = exc.message
    rows: list[ServiceOut] = []
    if notice is None:
        found = services.list_services(session, provider_org_id=org_id, mode=mode if mode in MODES else None,
                                       status="published")
        rows = [services.service_out(session, s) for s in found]
        if q:
            needle = q.lower()
            rows = [r for r in rows if needle in f"{r.code} {r.name} {r.resource_title} {r.provider_name}".lower()]
    own = []
    if actor.role in ORG_ROLES and actor.org_id is not None and actor.can("service.publish", actor.org_id):
        own = [services.service_out(session, s) for s in services.list_services(session, provider_org_id=actor.org_id)
               if s.status != "published"]
    context = {"rows": rows, "own_unpublished": own, "provider": provider, "mode": mode, "q": q, "notice": notice,
               "providers": [(o.code, o.name) for o in catalog_repo.list_orgs(session)], "modes": MODES,
               "can_publish": may_publish(actor), "published_at": {r.code: city_time(r.published_at, False)
                                                                   for r in rows}}
    return render(request, "exchange/services.html", context, actor=actor, nav="services")


@router.get("/exchange/services/{code}")
def service_page(code: str, request: Request, session: DbSession, actor: Reader) -> Response:
    try:
        service = services.get_service(session, code)
        if service.status == "draft" and not actor.can("service.publish", service.provider_org_id):
            raise NotFound(f"service {code[:40]} not found", field="service")
    except PlatformError as exc:
        return render_error(request, exc, actor)
    svc = services.service_out(session, service)
    res = services.current_resource(session, service) or service.resource
    context = {
        "s": svc, "codes": code_samples(session, svc), "key_fields": list(res.key_fields),
        "examples": examples(str(request.base_url), svc, list(res.key_fields), list(res.query_fields)),
        "can_apply": svc.status == "published" and actor.can("exchange.apply"),
        "published_at": city_time(svc.published_at),
    }
    return render(request, "exchange/service.html", context, actor=actor, nav="services")


# -- publishing --------------------------------------------------------------------------------

def _publishable(session: Session, actor: Actor) -> list[Resource]:
    """Published, shared resources the actor may offer: its department's (all, for the platform)."""
    org = actor.org_id if actor.role in ORG_ROLES else None
    rows, _ = catalog_repo.search_resources(session, provider_id=org, status="published", limit=MAX_RESOURCES)
    return [r for r in rows if r.share_type != "none" and actor.can("service.publish", r.provider_id)]


def _publish_context(session: Session, actor: Actor, res: Resource | None, **values: Any) -> dict[str, Any]:
    return {"resources": _publishable(session, actor), "res": res, "errors": values.pop("errors", {}),
            "chosen_modes": values.pop("modes", []), "chosen_fields": values.pop("fields", None),
            "name": values.pop("name", res.title if res else ""), "description": values.pop("description", ""),
            "code": values.pop("code", ""), "modes": MODES}


def _resource_for(session: Session, actor: Actor, ref: str) -> Resource | None:
    if not ref:
        return None
    res = get_resource(session, ref)
    if not actor.can("service.publish", res.provider_id):
        raise PermissionDenied(f"role {actor.role} may not publish services of another department's resource")
    return res


@router.get("/exchange/publish")
def publish_form(request: Request, session: DbSession, actor: Reader, resource: str = "") -> Response:
    try:
        if not may_publish(actor):
            raise PermissionDenied(f"role {actor.role} may not publish services")
        res = _resource_for(session, actor, resource.strip()[:80])
    except PlatformError as exc:
        return render_error(request, exc, actor)
    return render(request, "exchange/publish.html", _publish_context(session, actor, res), actor=actor,
                  nav="services")


@router.post("/exchange/publish")
def publish(request: Request, session: DbSession, actor: FormActor,
            resource: Annotated[str, Form()] = "", modes: Annotated[list[str] | None, Form()] = None,
            fields: Annotated[list[str] | None, Form()] = None, name: Annotated[str, Form()] = "",
            description: Annotated[str, Form()] = "", code: Annotated[str, Form()] = "") -> Response:
    """One service per chosen mode, all in this request's transaction (all or none)."""
    try:
        res = _resource_for(session, actor, resource.strip()[:80])
    except PlatformError as exc:
        return render_error(request, exc, actor)
    if res is None:
        return redirect("/exchange/publish")
    modes, fields = modes or [], fields or []
    values: dict[str, Any] = {"modes": modes, "fields": fields, "name": name, "description": description,
                              "code": code.strip()}
    errors: dict[str, str] = {}
    if not modes:
        errors["modes"] = "required"
    if not fields:
        errors["fields"] = "required"
    if code.strip() and len(modes) > 1:
        errors["code"] = "code_one_mode"
    created: list[str] = []
    if not errors:
        try:
            for mode in modes:
                title = name.strip() if len(modes) == 1 else f"{name.strip()}（{LABELS['share_mode'].get(mode, mode)}）"
                data = ServiceIn.model_validate({"resource": str(res.id), "mode": mode, "fields": fields, "name": title,
                                                 "description": description, "code": code.strip() or None})
                created.append(services.publish_service(session, actor, data).code)
        except ValidationError as exc:
            errors = validation_errors(exc, PUBLISH_FIELDS)
        except PlatformError as exc:
            if isinstance(exc, PermissionDenied):
                raise
            errors = platform_errors(exc, PUBLISH_FIELDS)
            if "mode" in errors:
                errors["modes"] = errors.pop("mode")
    if errors:
        session.rollback()
        context = _publish_context(session, actor, get_resource(session, res.id), errors=errors, **values)
        return render(request, "exchange/publish.html", context, actor=actor, status=422, nav="services")
    return redirect(f"/exchange/services/{created[0]}" if len(created) == 1
                    else f"/exchange/services?provider={res.provider.code}")
