"""`onceonly exchange …`: business systems, keys, services, applications and grants from the
server console (acting as the platform operator, audited as cli:<os user>)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from onceonly.accounts.actor import Actor
from onceonly.catalog.models import Resource
from onceonly.catalog.orgs import get_org
from onceonly.cli import console, one_line_errors, settings, unit_of_work
from onceonly.errors import ValidationFailed
from onceonly.exchange import applications, credentials, grants, services, systems
from onceonly.exchange import repository as repo
from onceonly.exchange.schemas import DecisionIn, ServiceIn, SystemIn
from onceonly.exchange.subscription_cli import register as register_subscriptions

exchange_app = typer.Typer(no_args_is_help=True, help="Exchange: systems, keys, services, applications, grants.")
system_app = typer.Typer(no_args_is_help=True, help="Business systems (业务系统), the exchange's API clients.")
key_app = typer.Typer(no_args_is_help=True, help="API keys of business systems (shown once).")
service_app = typer.Typer(no_args_is_help=True, help="Services over resources, one per sharing mode.")
application_app = typer.Typer(no_args_is_help=True, help="Applications (共享申请) and their decisions.")
grant_app = typer.Typer(no_args_is_help=True, help="Grants (授权).")
exchange_app.add_typer(system_app, name="system")
exchange_app.add_typer(key_app, name="key")
exchange_app.add_typer(service_app, name="service")
exchange_app.add_typer(application_app, name="application")
exchange_app.add_typer(grant_app, name="grant")
register_subscriptions(exchange_app)  # deliver, subscription …


def _names(value: str | None) -> list[str] | None:
    return [n.strip() for n in value.split(",") if n.strip()] if value else None


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else ""


# -- systems -----------------------------------------------------------------------------------

@system_app.command("create")
@one_line_errors
def system_create(
    code: Annotated[str, typer.Argument(help="System code, e.g. rsj-shebao")],
    name: Annotated[str, typer.Argument(help="System name, e.g. 社会保险业务系统")],
    org: Annotated[str, typer.Option(help="Owning organization's code (USCC)")],
    contact: Annotated[str, typer.Option(help="Person and phone or e-mail")] = "",
    signing: Annotated[bool, typer.Option("--signing", help="Require HMAC-SM3 request signatures")] = False,
) -> None:
    """Register a business system (prints its signing secret once, if signing)."""
    with unit_of_work() as session:
        system, secret = systems.create_system(
            session, Actor.cli(), SystemIn(code=code, name=name, org=org, contact=contact, signing_required=signing),
            settings().ensure_secret())
        console.print(f"system {system.code} created for {system.org.code}", highlight=False)
    if secret:
        console.print(f"signing secret (shown once): {secret}", highlight=False)


@system_app.command("list")
@one_line_errors
def system_list() -> None:
    """List business systems."""
    with unit_of_work() as session:
        table = Table("code", "name", "org", "contact", "active", "signing")
        for s in systems.visible_systems(session, Actor.cli()):
            table.add_row(s.code, s.name, s.org.code, s.contact, "yes" if s.active else "no",
                          "required" if s.signing_required else "")
        console.print(table)


# -- keys --------------------------------------------------------------------------------------

@key_app.command("create")
@one_line_errors
def key_create(
    system: Annotated[str, typer.Argument(help="System code")],
    days: Annotated[int, typer.Option(min=1, max=3650, help="Valid for this many days")] = 365,
) -> None:
    """Create an API key for a system and print it once."""
    with unit_of_work() as session:
        cred, key = credentials.create_key(session, Actor.cli(), systems.get_system(session, system), days=days)
        console.print(f"key {cred.id} for {system} (shown once): {key}", highlight=False)


@key_app.command("list")
@one_line_errors
def key_list(system: Annotated[str, typer.Argument(help="System code")]) -> None:
    """A system's keys: prefix, hint and status (the keys themselves are never shown again)."""
    with unit_of_work() as session:
        table = Table("id", "prefix", "hint", "status", "expires", "overlap until", "last used")
        for c in repo.credentials_of(session, systems.get_system(session, system).id):
            table.add_row(str(c.id), c.prefix, c.hint, credentials.key_status(c), _when(c.expires_at),
                          _when(c.overlap_until), _when(c.last_used_at))
        console.print(table)


@key_app.command("rotate")
@one_line_errors
def key_rotate(
    key_id: Annotated[int, typer.Argument(help="Key id (from `key list`)")],
    overlap_hours: Annotated[float, typer.Option(min=0, max=168, help="The old key keeps working this long")] = 24,
    days: Annotated[int, typer.Option(min=1, max=3650)] = 365,
) -> None:
    """Replace a key: prints the new key once; the old one works until the overlap ends."""
    with unit_of_work() as session:
        actor = Actor.cli()
        old = credentials.get_key(session, actor, key_id)
        new, key = credentials.rotate_key(session, actor, old, overlap=timedelta(hours=overlap_hours), days=days)
        console.print(f"key {new.id} replaces key {old.id} (valid until {_when(old.overlap_until)} UTC); "
                      f"new key (shown once): {key}", highlight=False)


@key_app.command("revoke")
@one_line_errors
def key_revoke(
    key_id: Annotated[int, typer.Argument(help="Key id")],
    reason: Annotated[str, typer.Option(help="Why")] = "",
) -> None:
    """Revoke a key at once."""
    with unit_of_work() as session:
        actor = Actor.cli()
        credentials.revoke_key(session, actor, credentials.get_key(session, actor, key_id), reason)
        console.print(f"key {key_id} revoked")


# -- services ----------------------------------------------------------------------------------

@service_app.command("publish")
@one_line_errors
def service_publish(
    resource: Annotated[str, typer.Argument(help="Resource code, name or id")],
    mode: Annotated[str, typer.Option(help="verify, query, api or bulk")],
    fields: Annotated[str, typer.Option(help="Comma-separated fields the service exposes")],
    name: Annotated[str, typer.Option(help="Service name")],
    code: Annotated[str | None, typer.Option(help="Service code (default: S + number)")] = None,
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Publish a service over a resource in one mode."""
    data = ServiceIn.model_validate({"resource": resource, "mode": mode, "fields": _names(fields) or [],
                                     "name": name, "code": code, "description": description})
    with unit_of_work() as session:
        service = services.publish_service(session, Actor.cli(), data)
        console.print(f"service {service.code} ({service.mode}) published over {service.resource.code}",
                      highlight=False)


@service_app.command("list")
@one_line_errors
def service_list(
    provider: Annotated[str | None, typer.Option(help="Provider organization's code")] = None,
    mode: Annotated[str | None, typer.Option(help="verify, query, api or bulk")] = None,
    status: Annotated[str | None, typer.Option(help="draft, published or retired")] = None,
) -> None:
    """List services."""
    with unit_of_work() as session:
        org_id = get_org(session, provider).id if provider else None
        table = Table("code", "name", "mode", "status", "provider", "resource", "fields")
        for s in services.list_services(session, provider_org_id=org_id, mode=mode, status=status):
            table.add_row(s.code, s.name, s.mode, s.status, s.provider.code, s.resource.code, ", ".join(s.fields))
        console.print(table)


@service_app.command("retire")
@one_line_errors
def service_retire(code: Annotated[str, typer.Argument(help="Service code")]) -> None:
    """Retire a service: its grants stop answering."""
    with unit_of_work() as session:
        services.set_status(session, Actor.cli(), services.get_service(session, code), "retired")
        console.print(f"service {code} retired")


# -- applications ------------------------------------------------------------------------------

@application_app.command("list")
@one_line_errors
def application_list(
    status: Annotated[str | None, typer.Option(help="pending_provider, pending_operator, approved, rejected, "
                                                    "withdrawn")] = None,
) -> None:
    """List applications, newest first."""
    with unit_of_work() as session:
        rows, total = applications.list_applications(session, Actor.cli(), status=status, limit=500)
        table = Table("id", "system", "service", "fields", "status", "applicant", "created")
        for a in rows:
            table.add_row(str(a.id), a.system.code, a.service.code, ", ".join(a.fields_approved or a.fields_requested),
                          a.status, a.applicant, _when(a.created_at))
        console.print(table)
        console.print(f"{total} application(s)")


@application_app.command("decide")
@one_line_errors
def application_decide(
    application_id: Annotated[int, typer.Argument(help="Application id")],
    decision: Annotated[str, typer.Argument(help="approve or reject")],
    fields: Annotated[str | None, typer.Option(help="Approve only these (comma-separated)")] = None,
    reason: Annotated[str, typer.Option(help="Why (required to reject)")] = "",
    rate_limit: Annotated[int | None, typer.Option(min=1, help="Calls per minute")] = None,
    daily_quota: Annotated[int | None, typer.Option(min=1, help="Records per day")] = None,
    mask: Annotated[list[str] | None, typer.Option(help="FIELD=RULE, e.g. phone=mobile (repeatable)")] = None,
    row_filter: Annotated[list[str] | None, typer.Option("--filter", help="FIELD=V1,V2 rows allowed (repeatable)")]
    = None,
) -> None:
    """Decide the step an application waits for (the console acts as provider or operator)."""
    with unit_of_work() as session:
        actor = Actor.cli()
        app = applications.get_application(session, actor, application_id, for_update=True)
        res = services.current_resource(session, app.service) or app.service.resource
        data = DecisionIn.model_validate({
            "decision": decision, "fields": _names(fields), "reason": reason, "rate_limit": rate_limit,
            "daily_quota": daily_quota, "masking": _pairs(mask, "mask") if mask else None,
            "row_filter": _row_filter(row_filter, res) if row_filter else None,
        })
        app = applications.decide(session, actor, app, data)
        grant = f"; grant {app.grant_id}" if app.grant_id and app.status == "approved" else ""
        console.print(f"application {app.id} is {app.status}{grant}", highlight=False)


def _pairs(items: list[str], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip() or not value.strip():
            raise ValidationFailed(f"--{option} takes FIELD=VALUE, not {item[:40]!r}", field=option)
        out[name.strip()] = value.strip()
    return out


def _row_filter(items: list[str], res: Resource) -> dict[str, list[Any]]:
    """FIELD=V1,V2 with values typed by the field (integer and boolean fields are converted)."""
    types = {f.name: f.type for f in res.fields}
    out: dict[str, list[Any]] = {}
    for name, raw in _pairs(items, "filter").items():
        values: list[Any] = [v.strip() for v in raw.split(",")]
        if types.get(name) == "integer":
            try:
                values = [int(v) for v in values]
            except ValueError:
                raise ValidationFailed(f"--filter {name} takes integers", field="filter") from None
        elif types.get(name) == "boolean":
            values = [v.lower() in ("1", "true", "yes", "是") for v in values]
        out[name] = values
    return out


# -- grants ------------------------------------------------------------------------------------

@grant_app.command("list")
@one_line_errors
def grant_list(
    system: Annotated[str | None, typer.Option(help="System code")] = None,
    service: Annotated[str | None, typer.Option(help="Service code")] = None,
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked grants")] = False,
) -> None:
    """List grants with today's use."""
    with unit_of_work() as session:
        system_id = systems.get_system(session, system).id if system else None
        service_id = services.get_service(session, service).id if service else None
        rows, _ = grants.list_grants(session, Actor.cli(), system_id=system_id, service_id=service_id,
                                     include_revoked=include_revoked, limit=500)
        table = Table("id", "system", "service", "fields", "masking", "filter", "rate/min", "quota/day",
                      "used today", "expires", "status")
        for g in rows:
            out = grants.grant_out(session, g)
            table.add_row(str(g.id), out.system, out.service, ", ".join(out.fields),
                          ", ".join(f"{k}={v}" for k, v in out.masking.items()),
                          ", ".join(f"{k}={v}" for k, v in out.row_filter.items()), str(out.rate_limit),
                          str(out.daily_quota), str(out.used_today), _when(out.expires_at), out.status)
        console.print(table)


@grant_app.command("revoke")
@one_line_errors
def grant_revoke(
    grant_id: Annotated[int, typer.Argument(help="Grant id")],
    reason: Annotated[str, typer.Option(help="Why (required)")],
) -> None:
    """Revoke a grant; the system's next call is refused."""
    with unit_of_work() as session:
        actor = Actor.cli()
        grants.revoke_grant(session, actor, grants.get_grant(session, actor, grant_id), reason)
        console.print(f"grant {grant_id} revoked")
