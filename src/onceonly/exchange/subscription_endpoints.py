"""Subscription API under /api/v1/exchange/subscriptions.

Two kinds of caller share these paths, told apart by the bearer credential:

- `SubscriptionConsumer` (= `ExchangeCaller`): the consumer system with its API key
  (`ook_…`, signed if it signs) registers and manages its own subscriptions. Each such call is
  audited as an exchange call (mode `subscription`, `detail.action`), answered or denied.
- `SubscriptionParty`: the consumer system, or staff (personal token or web session) — the
  provider's and the consumer's staff and the platform roles — for the read views and replay.

Ids are matched as integers in the path (`{id:int}`), so these routes never take a path of the
data endpoints `/api/v1/exchange/{service}/…` (this router is registered before them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.audit import PURPOSE_HEADER, append_call, request_digest
from onceonly.catalog.schemas import Page
from onceonly.db import Database
from onceonly.deps import DbSession, client_ip, current_actor, get_db
from onceonly.errors import PlatformError
from onceonly.exchange import subscriptions as subs
from onceonly.exchange.caller import ExchangeCaller, exchange_caller, request_body, request_target
from onceonly.exchange.credentials import KEY_PREFIX
from onceonly.exchange.models import System
from onceonly.exchange.schemas import SERVICE_CODE
from onceonly.exchange.subscription_models import Subscription
from onceonly.exchange.subscriptions import (
    DeliveryOut,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionSecret,
    SubscriptionStatus,
)

router = APIRouter(prefix="/exchange/subscriptions", tags=["exchange subscriptions"])
Body = Annotated[bytes, Depends(request_body)]
MODE = "subscription"

_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or a refused API key / staff credential"},
    403: {"description": "No grant for the service (or revoked, expired, mode not offered), or role may not"},
    404: {"description": "Not found (or not the caller's)"},
    409: {"description": "Conflicts with the subscription's state"},
    422: {"description": "Invalid input (problem+json names the field)"},
    429: {"description": "Rate limit of the grant reached"},
}


def _write_session(db: Annotated[Database, Depends(get_db)]) -> Iterator[Session]:
    with db.session(write=True) as session:
        yield session


# Authenticating a system writes (nonce, last use) even on a GET: on SQLite such a request takes
# the write lock up front, or it could fail half-way with "database is locked".
WriteSession = Annotated[Session, Depends(_write_session, scope="function")]


def subscription_party(request: Request, session: WriteSession, body: Body) -> System | Actor:
    """The consumer system (an API key) or a staff member (token or session)."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip().startswith(KEY_PREFIX):
        return exchange_caller(request, session, body)
    return current_actor(request, session)


SubscriptionConsumer = ExchangeCaller
SubscriptionParty = Annotated[System | Actor, Depends(subscription_party)]
SubscriptionId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@contextmanager
def _audited(request: Request, session: Session, system: System, body: bytes, action: str,
             service: str = "") -> Iterator[dict[str, Any]]:
    """Audit a consumer's call: answered ones in the request's transaction (which has written:
    the rate counter, the nonce), denied ones after rolling it back. Names are read up front,
    since a rollback expires the loaded objects."""
    system_code, org_code = system.code, system.org.code
    purpose, ip = request.headers.get(PURPOSE_HEADER), client_ip(request)
    digest = request_digest(request.method, request_target(request), body)
    note: dict[str, Any] = {"service": service, "status": 200, "detail": {}}
    start = perf_counter()

    def record(status: int, detail: dict[str, Any], in_session: Session | None) -> None:
        append_call(request.app.state.db, system=system_code, org=org_code, service=note["service"], mode=MODE,
                    status=status, purpose=purpose, request_digest=digest, ip=ip,
                    latency_ms=int((perf_counter() - start) * 1000), detail={"action": action, **detail},
                    session=in_session)

    try:
        yield note
    except PlatformError as exc:
        session.rollback()
        record(exc.status, {"error": exc.code, **note["detail"]}, None)
        raise
    record(note["status"], note["detail"], session)


def _own(session: Session, system: System, subscription_id: int, note: dict[str, Any]) -> Subscription:
    sub = subs.get_for_system(session, system, subscription_id)
    note["service"] = sub.service.code
    note["detail"]["subscription"] = sub.id
    return sub


def _visible(session: Session, party: System | Actor, subscription_id: int) -> Subscription:
    if isinstance(party, System):
        return subs.get_for_system(session, party, subscription_id)
    return subs.get_for_staff(session, party, subscription_id)


@router.post("", response_model=SubscriptionCreated, status_code=201, responses=_RESPONSES,
             summary="Register a webhook for a bulk service the system holds a grant for (secret shown once)")
def create(data: SubscriptionIn, request: Request, session: DbSession, system: SubscriptionConsumer,
           body: Body) -> SubscriptionCreated:
    with _audited(request, session, system, body, "create", data.service) as note:
        settings = request.app.state.settings
        sub, secret = subs.create_subscription(session, system, data, master=request.app.state.secret,
                                               allow_private=settings.exchange_webhook_allow_private)
        note["status"], note["detail"] = 201, {"subscription": sub.id, "cursor": sub.cursor}
        out = subs.subscription_out(session, sub)
    return SubscriptionCreated(**out.model_dump(), secret=secret)


@router.get("", response_model=Page[SubscriptionOut], responses=_RESPONSES,
            summary="Subscriptions: the system's own, or for staff those of their organization's services "
                    "and systems (all, for platform roles)")
def list_subscriptions(
    session: WriteSession, party: SubscriptionParty,
    service: Annotated[str | None, Query(max_length=40, pattern=SERVICE_CODE)] = None,
    status: Annotated[SubscriptionStatus | None, Query(description="Default: all but deleted")] = None,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0, limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[SubscriptionOut]:
    if isinstance(party, System):
        rows = list(subs.list_for_system(session, party, service=service, status=status))
        total, rows = len(rows), rows[offset:offset + limit]
    else:
        found, total = subs.list_for_staff(session, party, service=service, status=status, offset=offset,
                                           limit=limit)
        rows = list(found)
    return Page[SubscriptionOut](items=[subs.subscription_out(session, s) for s in rows], total=total,
                                 offset=offset, limit=limit)


@router.get("/{subscription_id:int}", response_model=SubscriptionOut, responses=_RESPONSES)
def get_subscription(subscription_id: SubscriptionId, session: WriteSession,
                     party: SubscriptionParty) -> SubscriptionOut:
    return subs.subscription_out(session, _visible(session, party, subscription_id))


@router.get("/{subscription_id:int}/deliveries", response_model=Page[DeliveryOut], responses=_RESPONSES,
            summary="Delivery attempts, newest first: seq range, HTTP status, latency, error (dead letters too)")
def list_deliveries(
    subscription_id: SubscriptionId, session: WriteSession, party: SubscriptionParty,
    status: Annotated[str | None, Query(pattern="^(delivered|failed|dead|skipped|blocked|waiting)$")] = None,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0, limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[DeliveryOut]:
    sub = _visible(session, party, subscription_id)
    rows, total = subs.deliveries(session, sub, status=status, offset=offset, limit=limit)
    return Page[DeliveryOut](items=[subs.delivery_out(d) for d in rows], total=total, offset=offset, limit=limit)


def _consumer_action(action: subs.Action, subscription_id: int, request: Request, session: Session,
                     system: System, body: bytes) -> Subscription:
    with _audited(request, session, system, body, action) as note:
        sub = subs.change_status(session, _own(session, system, subscription_id, note), action)
        note["detail"]["cursor"] = sub.cursor
    return sub


@router.post("/{subscription_id:int}/pause", response_model=SubscriptionOut, responses=_RESPONSES,
             summary="Stop deliveries; changes wait at the cursor")
def pause(subscription_id: SubscriptionId, request: Request, session: DbSession, system: SubscriptionConsumer,
          body: Body) -> SubscriptionOut:
    return subs.subscription_out(session, _consumer_action("pause", subscription_id, request, session, system,
                                                           body))


@router.post("/{subscription_id:int}/resume", response_model=SubscriptionOut, responses=_RESPONSES,
             summary="Deliver again after a pause, or after a block once the grant allows it again")
def resume(subscription_id: SubscriptionId, request: Request, session: DbSession, system: SubscriptionConsumer,
           body: Body) -> SubscriptionOut:
    return subs.subscription_out(session, _consumer_action("resume", subscription_id, request, session, system,
                                                           body))


@router.post("/{subscription_id:int}/replay", response_model=SubscriptionOut, responses=_RESPONSES,
             summary="Restart a dead-lettered subscription from its cursor (consumer, provider or platform)")
def replay(subscription_id: SubscriptionId, request: Request, session: WriteSession, party: SubscriptionParty,
           body: Body) -> SubscriptionOut:
    if isinstance(party, System):
        return subs.subscription_out(session, _consumer_action("replay", subscription_id, request, session, party,
                                                               body))
    sub = subs.replay_by_staff(session, party, subs.get_for_staff(session, party, subscription_id))
    return subs.subscription_out(session, sub)


@router.post("/{subscription_id:int}/secret", response_model=SubscriptionSecret, responses=_RESPONSES,
             summary="A new webhook signing secret (shown once; used from the next delivery on)")
def new_secret(subscription_id: SubscriptionId, request: Request, session: DbSession, system: SubscriptionConsumer,
               body: Body) -> SubscriptionSecret:
    with _audited(request, session, system, body, "secret") as note:
        sub = _own(session, system, subscription_id, note)
        secret = subs.rotate_secret(session, sub, request.app.state.secret)
    return SubscriptionSecret(id=sub.id, secret=secret)


@router.delete("/{subscription_id:int}", status_code=204, response_class=Response, responses=_RESPONSES,
               summary="Delete: no more deliveries; the subscription and its log stay visible as deleted")
def delete(subscription_id: SubscriptionId, request: Request, session: DbSession, system: SubscriptionConsumer,
           body: Body) -> Response:
    with _audited(request, session, system, body, "delete") as note:
        subs.change_status(session, _own(session, system, subscription_id, note), "delete")
        note["status"] = 204
    return Response(status_code=204)
