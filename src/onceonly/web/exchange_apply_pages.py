"""共享申请 on the web: a consumer department applies for a service for one of its systems and
follows its applications; the provider's reviewers work through their queue (approve, narrow
the fields, or reject with a reason) and the platform operator through the applications that
need its approval. Pages call exchange/applications.py like the API does."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.deps import DbSession
from onceonly.errors import NotFound, PermissionDenied, PlatformError
from onceonly.exchange import applications, grants, services, systems
from onceonly.exchange.models import Application, Service, System
from onceonly.exchange.schemas import ApplicationIn, ApplicationOut, DecisionIn
from onceonly.web.catalog_pages import Reader
from onceonly.web.csrf import csrf_guard
from onceonly.web.pages import redirect, render, render_error
from onceonly.web.pagination import Pager, page_number
from onceonly.web.staff import FormActor, city_time, platform_errors, validation_errors

router = APIRouter(dependencies=[Depends(csrf_guard)], include_in_schema=False)

PAGE_SIZE = 20
APPLY_FIELDS = ("system", "fields", "purpose", "legal_basis", "expected_volume", "expires_on")
DECIDE_FIELDS = ("decision", "fields", "reason", "rate_limit", "daily_quota")
VIEWS = ("mine", "review", "operate", "all")


# -- applying ----------------------------------------------------------------------------------

def _apply_systems(session: Session, actor: Actor) -> list[System]:
    return [s for s in systems.visible_systems(session, actor) if s.active and actor.can("exchange.apply", s.org_id)]


def _published(session: Session, code: str) -> Service:
    service = services.get_service(session, code)
    if service.status != "published":
        raise NotFound(f"service {code[:40]} is not open for applications", field="service")
    return service


def _apply_context(session: Session, actor: Actor, service: Service, **values: Any) -> dict[str, Any]:
    svc = services.service_out(session, service)
    return {"s": svc, "systems": _apply_systems(session, actor), "errors": values.get("errors", {}),
            "system": values.get("system", ""), "chosen": values.get("fields") or [f.name for f in svc.fields],
            "purpose": values.get("purpose", ""), "legal_basis": values.get("legal_basis", ""),
            "expected_volume": values.get("expected_volume", "1000"),
            "expires_on": values.get("expires_on", applications.expires_default().isoformat()),
            "today": grants.city_today().isoformat()}


@router.get("/exchange/services/{code}/apply")
def apply_form(code: str, request: Request, session: DbSession, actor: Reader) -> Response:
    try:
        actor.require("exchange.apply")
        service = _published(session, code)
    except PlatformError as exc:
        return render_error(request, exc, actor)
    return render(request, "exchange/apply.html", _apply_context(session, actor, service), actor=actor,
                  nav="applications")


@router.post("/exchange/services/{code}/apply")
def apply(code: str, request: Request, session: DbSession, actor: FormActor,
          system: Annotated[str, Form()] = "", fields: Annotated[list[str] | None, Form()] = None,
          purpose: Annotated[str, Form()] = "", legal_basis: Annotated[str, Form()] = "",
          expected_volume: Annotated[str, Form()] = "", expires_on: Annotated[str, Form()] = "") -> Response:
    try:
        actor.require("exchange.apply")
        service = _published(session, code)
    except PlatformError as exc:
        return render_error(request, exc, actor)
    values = {"system": system, "fields": fields or [], "purpose": purpose, "legal_basis": legal_basis,
              "expected_volume": expected_volume, "expires_on": expires_on}
    errors: dict[str, str] = {}
    app = None
    try:
        data = ApplicationIn.model_validate({**values, "service": service.code,
                                             "expected_volume": expected_volume.strip() or None,
                                             "expires_on": expires_on.strip() or None})
        chosen = systems.get_system(session, data.system)
        systems.require_view(actor, chosen)
        app = applications.apply(session, actor, chosen, service, data)
    except ValidationError as exc:
        errors = validation_errors(exc, APPLY_FIELDS)
    except PlatformError as exc:
        if isinstance(exc, PermissionDenied):
            raise
        errors = platform_errors(exc, APPLY_FIELDS)
    if app is None:
        session.rollback()
        context = _apply_context(session, actor, _published(session, code), errors=errors, **values)
        return render(request, "exchange/apply.html", context, actor=actor, status=422, nav="applications")
    return redirect(f"/exchange/applications/{app.id}")


# -- lists and queues --------------------------------------------------------------------------

def views_for(actor: Actor) -> list[str]:
    """The tabs this staff member has: own applications, the provider's queue, the operator's
    queue, everything visible."""
    out = []
    if actor.org_id is not None and actor.role in ("steward", "dept_admin", "reviewer"):
        out.append("mine")
    if actor.org_id is not None and actor.can("exchange.review", actor.org_id):
        out.append("review")
    if actor.can("exchange.operate"):
        out.append("operate")
    out.append("all")
    return out


def default_view(actor: Actor, tabs: list[str]) -> str:
    """Reviewers land on their queue, the operator on its own; everyone else on the first tab."""
    preferred = {"reviewer": "review", "platform_admin": "operate"}.get(actor.role)
    return preferred if preferred in tabs else tabs[0]


@router.get("/exchange/applications")
def applications_page(request: Request, session: DbSession, actor: Reader, view: str = "", status: str = "",
                      page: str = "1") -> Response:
    tabs = views_for(actor)
    view = view if view in tabs else default_view(actor, tabs)
    status = status if status in ("pending_provider", "pending_operator", "approved", "rejected", "withdrawn") else ""
    pager = Pager(page_number(page), PAGE_SIZE, 0, "/exchange/applications", (("view", view), ("status", status)))
    try:
        rows, total = applications.list_applications(session, actor, view=view, status=status or None,
                                                     offset=pager.offset, limit=PAGE_SIZE)
    except PlatformError as exc:
        return render_error(request, exc, actor)
    pager = Pager(pager.page, PAGE_SIZE, total, pager.path, pager.params)
    items = [applications.application_out(session, a) for a in rows]
    context = {"items": items, "pager": pager, "view": view, "tabs": tabs, "status": status,
               "created": {a.id: city_time(a.created_at, False) for a in items}}
    return render(request, "exchange/applications.html", context, actor=actor, nav="applications")


# -- one application ---------------------------------------------------------------------------

def decider_step(actor: Actor, app: Application) -> str | None:
    """The step this staff member may take on the application now, if any."""
    if app.status == "pending_provider" and actor.can("exchange.review", app.provider_org_id):
        return "provider"
    if app.status == "pending_operator" and actor.can("exchange.operate"):
        return "operator"
    return None


def _app_context(session: Session, actor: Actor, app: Application, **values: Any) -> dict[str, Any]:
    out: ApplicationOut = applications.application_out(session, app)
    svc = services.service_out(session, app.service)
    titles = {f.name: f.title for f in svc.fields}
    step = decider_step(actor, app)
    grant = None
    if app.grant_id is not None:
        try:
            grant = grants.grant_out(session, grants.get_grant(session, actor, app.grant_id))
        except PlatformError:
            grant = None
    offered = list(app.fields_approved or app.fields_requested)
    return {
        "a": out, "titles": titles, "step": step, "grant": grant, "offered": offered,
        "chosen": values.get("fields") or offered, "reason": values.get("reason", ""),
        "rate_limit": values.get("rate_limit", ""), "daily_quota": values.get("daily_quota", ""),
        "errors": values.get("errors", {}),
        "can_withdraw": app.status in applications.PENDING and actor.can("exchange.apply", app.consumer_org_id),
        "times": {"created": city_time(out.created_at), "decided": city_time(out.decided_at),
                  "expires": city_time(grant.expires_at) if grant else "",
                  **{f"d{i}": city_time(d.at) for i, d in enumerate(out.decisions)}},
    }


@router.get("/exchange/applications/{application_id:int}")
def application_page(application_id: int, request: Request, session: DbSession, actor: Reader) -> Response:
    try:
        app = applications.get_application(session, actor, application_id)
    except PlatformError as exc:
        return render_error(request, exc, actor)
    return render(request, "exchange/application.html", _app_context(session, actor, app), actor=actor,
                  nav="applications")


def _optional_int(value: str) -> int | str | None:
    value = value.strip()
    return None if not value else int(value) if value.isdigit() and len(value) < 12 else value


@router.post("/exchange/applications/{application_id:int}/decision")
def decide(application_id: int, request: Request, session: DbSession, actor: FormActor,
           decision: Annotated[str, Form()] = "", fields: Annotated[list[str] | None, Form()] = None,
           reason: Annotated[str, Form()] = "", rate_limit: Annotated[str, Form()] = "",
           daily_quota: Annotated[str, Form()] = "") -> Response:
    try:
        app = applications.get_application(session, actor, application_id, for_update=True)
    except PlatformError as exc:
        return render_error(request, exc, actor)
    offered = list(app.fields_approved or app.fields_requested)
    chosen = fields or []
    values = {"fields": chosen, "reason": reason, "rate_limit": rate_limit, "daily_quota": daily_quota}
    errors: dict[str, str] = {}
    try:
        narrowed = None if decision == "reject" or set(chosen) == set(offered) else chosen
        data = DecisionIn.model_validate({"decision": decision, "fields": narrowed, "reason": reason,
                                          "rate_limit": _optional_int(rate_limit),
                                          "daily_quota": _optional_int(daily_quota)})
        if data.decision == "approve" and not chosen:
            errors["fields"] = "required"
        else:
            applications.decide(session, actor, app, data)
    except ValidationError as exc:
        errors = validation_errors(exc, DECIDE_FIELDS)
    except PlatformError as exc:
        if isinstance(exc, PermissionDenied):
            raise
        errors = platform_errors(exc, DECIDE_FIELDS)
    if errors:
        session.rollback()
        app = applications.get_application(session, actor, application_id)
        context = _app_context(session, actor, app, errors=errors, **values)
        return render(request, "exchange/application.html", context, actor=actor, status=422, nav="applications")
    return redirect(f"/exchange/applications/{application_id}")


@router.post("/exchange/applications/{application_id:int}/withdraw")
def withdraw(application_id: int, request: Request, session: DbSession, actor: FormActor,
             reason: Annotated[str, Form()] = "") -> Response:
    try:
        app = applications.get_application(session, actor, application_id, for_update=True)
        applications.withdraw(session, actor, app, reason[:2000])
    except PlatformError as exc:
        session.rollback()
        return render_error(request, exc, actor)
    return redirect(f"/exchange/applications/{application_id}")

