"""Exchange management API under /api/v1/exchange: systems and their keys, services,
applications with their decisions, grants. The data plane (/api/v1/exchange/{service}/verify,
records, export, changes) is separate and builds on enforcement.py; the words used here
(systems, services, applications, grants) are reserved as codes so the two never collide."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from onceonly.accounts.actor import Actor
from onceonly.catalog.orgs import get_org
from onceonly.catalog.schemas import Page
from onceonly.deps import CurrentActor, DbSession
from onceonly.errors import NotFound
from onceonly.exchange import applications, credentials, grants, services, systems
from onceonly.exchange import repository as repo
from onceonly.exchange.models import Credential, Service, System
from onceonly.exchange.schemas import (
    SERVICE_CODE,
    SYSTEM_CODE,
    ApplicationIn,
    ApplicationOut,
    DecisionIn,
    GrantOut,
    KeyCreated,
    KeyIn,
    KeyOut,
    KeyRotateIn,
    ReasonIn,
    RevokeIn,
    ServiceIn,
    ServiceOut,
    SigningSecret,
    Status,
    SystemCreated,
    SystemIn,
    SystemOut,
    SystemPatch,
)

router = APIRouter(prefix="/exchange", tags=["exchange"])

_401: dict[str, Any] = {"description": "Not signed in"}
_403: dict[str, Any] = {"description": "Role may not do this (department roles act for their own organization)"}
_404: dict[str, Any] = {"description": "Not found (or not visible to the caller)"}
_409: dict[str, Any] = {"description": "Conflicts with the current state"}
_422: dict[str, Any] = {"description": "Invalid input (problem+json names the field)"}
READ: dict[int | str, dict[str, Any]] = {401: _401, 403: _403, 404: _404, 422: _422}
WRITE: dict[int | str, dict[str, Any]] = {**READ, 409: _409}

SystemCodePath = Annotated[str, Path(max_length=40, pattern=SYSTEM_CODE)]
ServiceCodePath = Annotated[str, Path(max_length=40, pattern=SERVICE_CODE)]
IdPath = Annotated[int, Path(ge=1, le=2**62)]


def platform_secret(request: Request) -> str:
    secret: str = request.app.state.secret
    return secret


MasterSecret = Annotated[str, Depends(platform_secret)]


def _system(session: DbSession, actor: Actor, code: str) -> System:
    system = systems.get_system(session, code)
    systems.require_view(actor, system)
    return system


def _key(session: DbSession, actor: Actor, system: System, key_id: int) -> Credential:
    cred = credentials.get_key(session, actor, key_id)
    if cred.system_id != system.id:
        raise NotFound(f"key {key_id} not found", field="key_id")
    return cred


def _service(session: DbSession, actor: Actor, code: str) -> Service:
    service = services.get_service(session, code)
    if service.status == "draft" and not actor.can("service.publish", service.provider_org_id):
        raise NotFound(f"service {code} not found", field="service")
    return service


# -- systems and keys --------------------------------------------------------------------------

@router.get("/systems", response_model=list[SystemOut], responses=READ,
            summary="Business systems (department staff see their own organization's)")
def list_systems(session: DbSession, actor: CurrentActor) -> list[SystemOut]:
    return [systems.system_out(s) for s in systems.visible_systems(session, actor)]


@router.post("/systems", response_model=SystemCreated, status_code=201, responses=WRITE,
             summary="Register a business system (its signing secret, if any, is shown once)")
def create_system(data: SystemIn, session: DbSession, actor: CurrentActor, master: MasterSecret) -> SystemCreated:
    system, secret = systems.create_system(session, actor, data, master)
    return SystemCreated(**systems.system_out(system).model_dump(), signing_secret=secret)


@router.get("/systems/{code}", response_model=SystemOut, responses=READ)
def get_system(code: SystemCodePath, session: DbSession, actor: CurrentActor) -> SystemOut:
    return systems.system_out(_system(session, actor, code))


@router.patch("/systems/{code}", response_model=SystemCreated, responses=WRITE,
              summary="Edit a system; turning signing on returns a new signing secret once")
def update_system(code: SystemCodePath, data: SystemPatch, session: DbSession, actor: CurrentActor,
                  master: MasterSecret) -> SystemCreated:
    system, secret = systems.update_system(session, actor, _system(session, actor, code), data, master)
    return SystemCreated(**systems.system_out(system).model_dump(), signing_secret=secret)


@router.post("/systems/{code}/signing-secret", response_model=SigningSecret, responses=WRITE,
             summary="Replace the system's signing secret (shown once; the old one stops at once)")
def rotate_signing_secret(code: SystemCodePath, session: DbSession, actor: CurrentActor,
                          master: MasterSecret) -> SigningSecret:
    system = _system(session, actor, code)
    return SigningSecret(system=system.code,
                         signing_secret=systems.rotate_signing_secret(session, actor, system, master))


@router.get("/systems/{code}/keys", response_model=list[KeyOut], responses=READ,
            summary="The system's API keys (prefix and hint only; keys are never shown again)")
def list_keys(code: SystemCodePath, session: DbSession, actor: CurrentActor) -> list[KeyOut]:
    system = _system(session, actor, code)
    return [credentials.key_out(c) for c in repo.credentials_of(session, system.id)]


@router.post("/systems/{code}/keys", response_model=KeyCreated, status_code=201, responses=WRITE,
             summary="Create an API key (shown once)")
def create_key(code: SystemCodePath, data: KeyIn, session: DbSession, actor: CurrentActor) -> KeyCreated:
    cred, key = credentials.create_key(session, actor, _system(session, actor, code), days=data.days)
    return KeyCreated(**credentials.key_out(cred).model_dump(), key=key)


@router.post("/systems/{code}/keys/{key_id}/rotate", response_model=KeyCreated, status_code=201, responses=WRITE,
             summary="Rotate a key: a new key (shown once); the old one works until the overlap ends")
def rotate_key(code: SystemCodePath, key_id: IdPath, data: KeyRotateIn, session: DbSession,
               actor: CurrentActor) -> KeyCreated:
    cred = _key(session, actor, _system(session, actor, code), key_id)
    new, key = credentials.rotate_key(session, actor, cred, overlap=timedelta(hours=data.overlap_hours),
                                      days=data.days)
    return KeyCreated(**credentials.key_out(new).model_dump(), key=key)


@router.post("/systems/{code}/keys/{key_id}/revoke", response_model=KeyOut, responses=WRITE,
             summary="Revoke a key at once")
def revoke_key(code: SystemCodePath, key_id: IdPath, data: ReasonIn, session: DbSession,
               actor: CurrentActor) -> KeyOut:
    cred = _key(session, actor, _system(session, actor, code), key_id)
    return credentials.key_out(credentials.revoke_key(session, actor, cred, data.reason))


# -- services ----------------------------------------------------------------------------------

@router.get("/services", response_model=list[ServiceOut], responses=READ,
            summary="Services with their fields' titles, types, sensitivity and code lists")
def list_services(
    session: DbSession, actor: CurrentActor,
    provider: Annotated[str | None, Query(max_length=18, description="Provider organization's code")] = None,
    mode: Annotated[Literal["verify", "query", "api", "bulk"] | None, Query()] = None,
    status: Annotated[Literal["draft", "published", "retired"] | None, Query()] = None,
) -> list[ServiceOut]:
    actor.require("catalog.read")
    org_id = get_org(session, provider).id if provider else None
    rows = services.list_services(session, provider_org_id=org_id, mode=mode, status=status)
    return [services.service_out(session, s) for s in rows
            if s.status != "draft" or actor.can("service.publish", s.provider_org_id)]


@router.post("/services", response_model=ServiceOut, status_code=201, responses=WRITE,
             summary="Publish a service over one of the provider's resources in one mode")
def publish_service(data: ServiceIn, session: DbSession, actor: CurrentActor) -> ServiceOut:
    return services.service_out(session, services.publish_service(session, actor, data))


@router.get("/services/{code}", response_model=ServiceOut, responses=READ)
def get_service(code: ServiceCodePath, session: DbSession, actor: CurrentActor) -> ServiceOut:
    actor.require("catalog.read")
    return services.service_out(session, _service(session, actor, code))


@router.post("/services/{code}/publish", response_model=ServiceOut, responses=WRITE, summary="Publish a draft")
def publish_draft(code: ServiceCodePath, session: DbSession, actor: CurrentActor) -> ServiceOut:
    service = services.set_status(session, actor, _service(session, actor, code), "published")
    return services.service_out(session, service)


@router.post("/services/{code}/retire", response_model=ServiceOut, responses=WRITE,
             summary="Retire a service: its grants stop answering")
def retire_service(code: ServiceCodePath, session: DbSession, actor: CurrentActor) -> ServiceOut:
    service = services.set_status(session, actor, _service(session, actor, code), "retired")
    return services.service_out(session, service)


# -- applications ------------------------------------------------------------------------------

@router.post("/applications", response_model=ApplicationOut, status_code=201, responses=WRITE,
             summary="Apply for fields of a service for one of the organization's systems")
def apply(data: ApplicationIn, session: DbSession, actor: CurrentActor) -> ApplicationOut:
    system = _system(session, actor, data.system)
    service = _service(session, actor, data.service)
    return applications.application_out(session, applications.apply(session, actor, system, service, data))


@router.get("/applications", response_model=Page[ApplicationOut], responses=READ,
            summary="Applications: all visible, mine (as consumer), review (provider's queue), operate "
                    "(operator's queue)")
def list_applications(
    session: DbSession, actor: CurrentActor,
    view: Annotated[Literal["all", "mine", "review", "operate"], Query()] = "all",
    status: Annotated[Status | None, Query()] = None,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0, limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[ApplicationOut]:
    rows, total = applications.list_applications(session, actor, view=view, status=status, offset=offset,
                                                 limit=limit)
    return Page[ApplicationOut](items=[applications.application_out(session, a) for a in rows], total=total,
                                offset=offset, limit=limit)


@router.get("/applications/{application_id}", response_model=ApplicationOut, responses=READ)
def get_application(application_id: IdPath, session: DbSession, actor: CurrentActor) -> ApplicationOut:
    return applications.application_out(session, applications.get_application(session, actor, application_id))


@router.post("/applications/{application_id}/decision", response_model=ApplicationOut, responses=WRITE,
             summary="Approve (optionally fewer fields, with grant terms) or reject with a reason")
def decide(application_id: IdPath, data: DecisionIn, session: DbSession, actor: CurrentActor) -> ApplicationOut:
    app = applications.get_application(session, actor, application_id, for_update=True)
    return applications.application_out(session, applications.decide(session, actor, app, data))


@router.post("/applications/{application_id}/withdraw", response_model=ApplicationOut, responses=WRITE,
             summary="Withdraw a pending application (consumer side)")
def withdraw(application_id: IdPath, data: ReasonIn, session: DbSession, actor: CurrentActor) -> ApplicationOut:
    app = applications.get_application(session, actor, application_id, for_update=True)
    return applications.application_out(session, applications.withdraw(session, actor, app, data.reason))


# -- grants ------------------------------------------------------------------------------------

@router.get("/grants", response_model=Page[GrantOut], responses=READ,
            summary="Grants the caller's organization holds or provides (all, for platform roles)")
def list_grants(
    session: DbSession, actor: CurrentActor,
    system: Annotated[str | None, Query(max_length=40, pattern=SYSTEM_CODE)] = None,
    service: Annotated[str | None, Query(max_length=40, pattern=SERVICE_CODE)] = None,
    include_revoked: bool = False,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0, limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[GrantOut]:
    system_id = systems.get_system(session, system).id if system else None  # rows are scoped below
    service_id = services.get_service(session, service).id if service else None
    rows, total = grants.list_grants(session, actor, system_id=system_id, service_id=service_id,
                                     include_revoked=include_revoked, offset=offset, limit=limit)
    return Page[GrantOut](items=[grants.grant_out(session, g) for g in rows], total=total, offset=offset,
                          limit=limit)


@router.get("/grants/{grant_id}", response_model=GrantOut, responses=READ)
def get_grant(grant_id: IdPath, session: DbSession, actor: CurrentActor) -> GrantOut:
    return grants.grant_out(session, grants.get_grant(session, actor, grant_id))


@router.post("/grants/{grant_id}/revoke", response_model=GrantOut, responses=WRITE,
             summary="Revoke a grant (provider, operator, or the consumer giving it up)")
def revoke_grant(grant_id: IdPath, data: RevokeIn, session: DbSession, actor: CurrentActor) -> GrantOut:
    grant = grants.revoke_grant(session, actor, grants.get_grant(session, actor, grant_id), data.reason)
    return grants.grant_out(session, grant)
