"""Push subscriptions (webhooks): a consumer system registers a URL for a bulk service it holds a
grant for, and the platform pushes the service's changes there in order, at least once, signed
with the subscription's own secret (webhooks.py delivers). The grant decides what is pushed —
fields, row filter, masking — at every delivery, not only at registration.

Who does what:

- the consumer system (its API key): register, list, pause, resume, replay, delete, new secret;
- the provider's staff, the consumer's staff and the platform roles (`exchange.read`): see the
  subscriptions of their services or systems and every delivery attempt, dead letters included;
- the provider's stewards and admins, the consumer's admin and the platform admin: replay a
  dead-lettered subscription.

A system's own actions are audited as exchange calls (mode `subscription`, `detail.action`) by
the endpoints; staff actions as staff actions here, in the caller's transaction."""

from __future__ import annotations

import ipaddress
import socket
import unicodedata
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.accounts.roles import ORG_ROLES
from onceonly.catalog.models import Resource
from onceonly.db import utcnow
from onceonly.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from onceonly.exchange import repository as repo
from onceonly.exchange import signing
from onceonly.exchange.enforcement import authorize
from onceonly.exchange.models import System
from onceonly.exchange.schemas import FieldName, ServiceCode
from onceonly.exchange.services import current_resource
from onceonly.exchange.staff_audit import audit
from onceonly.exchange.subscription_models import Delivery, Subscription

SECRET_PREFIX = "ows_"
MAX_PER_SERVICE = 5  # live subscriptions of one system for one service
URL_MAX = 2000
SubscriptionStatus = Literal["active", "paused", "blocked", "dead", "deleted"]
Action = Literal["pause", "resume", "replay", "delete"]
# action -> (statuses it applies to, status it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "pause": (frozenset({"active", "blocked", "dead"}), "paused"),
    "resume": (frozenset({"paused", "blocked"}), "active"),
    "replay": (frozenset({"dead"}), "active"),
    "delete": (frozenset({"active", "paused", "blocked", "dead"}), "deleted"),
}
Resolver = Callable[[str, int], Sequence[str]]


# -- request and response shapes -----------------------------------------------------------------

class SubscriptionIn(BaseModel):
    service: ServiceCode
    url: str = Field(min_length=1, max_length=URL_MAX, description="http or https URL the changes are POSTed to")
    fields: list[FieldName] | None = Field(default=None, min_length=1, max_length=500,
                                           description="Push only these granted fields (default: all granted)")
    since: int | None = Field(default=None, ge=0, le=2**62,
                              description="Deliver the changes after this change-log seq (0: the whole log); "
                                          "default: from now on")


class SubscriptionOut(BaseModel):
    id: int
    system: str
    consumer_org: str
    service: str
    provider_org: str
    url: str
    fields: list[str] | None
    status: SubscriptionStatus
    cursor: int = Field(description="Last change-log seq delivered (or passed over by the row filter)")
    resource_version: int | None = Field(description="Resource version the cursor counts in")
    latest_seq: int | None = Field(description="Newest change-log seq of the service's current resource version")
    backlog: int | None = Field(description="Changes not yet delivered")
    attempts: int = Field(description="Failed attempts at the current batch")
    next_attempt_at: datetime
    last_error: str | None
    last_delivered_at: datetime | None
    dead_at: datetime | None
    secret_hint: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="Webhook signing secret, shown only in this response")


class SubscriptionSecret(BaseModel):
    id: int
    secret: str = Field(description="The new webhook signing secret, shown only in this response")


class DeliveryOut(BaseModel):
    id: int
    delivery_id: str | None
    attempt: int
    first_seq: int | None
    last_seq: int | None
    records: int
    bytes: int
    status: Literal["delivered", "failed", "dead", "skipped", "blocked", "waiting"]
    http_status: int | None
    latency_ms: int
    error: str | None
    at: datetime


# -- URL check (SSRF guard) ----------------------------------------------------------------------

def _resolve(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def check_url(url: str, *, allow_private: bool, resolve: Resolver = _resolve) -> str:
    """An http(s) URL without credentials whose host resolves, and — unless private targets
    are allowed — only to public addresses (no loopback, private, link-local, shared or
    reserved ranges), so a webhook cannot be aimed at the platform's own network."""
    url = url.strip()
    if not url or len(url) > URL_MAX:
        raise ValidationFailed(f"url must be 1-{URL_MAX} characters", field="url")
    if any(c.isspace() or unicodedata.category(c) == "Cc" for c in url):
        raise ValidationFailed("url must not contain spaces or control characters", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValidationFailed("url is not a valid URL (check the host and port)", field="url") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValidationFailed("url must be an http or https URL", field="url")
    if not parts.hostname:
        raise ValidationFailed("url has no host", field="url")
    if parts.username is not None or parts.password is not None:
        raise ValidationFailed("url must not carry a user or password; receivers check the signature instead",
                               field="url")
    if parts.fragment:
        raise ValidationFailed("url must not have a #fragment", field="url")
    host = parts.hostname
    try:
        addresses = resolve(host, port or (443 if parts.scheme.lower() == "https" else 80))
    except (OSError, UnicodeError):
        raise ValidationFailed(f"url: host {host[:100]} cannot be resolved", field="url") from None
    if not addresses:
        raise ValidationFailed(f"url: host {host[:100]} cannot be resolved", field="url")
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise ValidationFailed(
                    f"url: host {host[:100]} resolves to {address}, a loopback, private or reserved address; "
                    "webhooks go to public addresses only (setting exchange_webhook_allow_private)", field="url")
    return url


def is_public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


# -- registration and the consumer's actions -----------------------------------------------------

def create_subscription(session: Session, system: System, data: SubscriptionIn, *, master: str,
                        allow_private: bool, now: datetime | None = None,
                        resolve: Resolver = _resolve) -> tuple[Subscription, str]:
    """Register a webhook; returns it and its signing secret (shown once). The grant must allow
    the `subscription` mode (a bulk service) and the requested fields."""
    now = now or utcnow()
    permit = authorize(session, system, data.service, "subscription", data.fields, now=now)
    url = check_url(data.url, allow_private=allow_private, resolve=resolve)
    live = _live_of(session, system.id, permit.service_id)
    if any(s.url == url for s in live):
        raise Conflict(f"system {system.code} already has a subscription to service {permit.service_code} for "
                       "this url", field="url")
    if len(live) >= MAX_PER_SERVICE:
        raise Conflict(f"system {system.code} has {MAX_PER_SERVICE} subscriptions to service "
                       f"{permit.service_code} already; delete one first", field="service")
    res = session.get(Resource, permit.resource_id)
    assert res is not None
    latest = int(res.last_seq or 0)
    if data.since is not None and data.since > latest:
        raise ValidationFailed(f"since must be at most {latest}, the newest change of service {permit.service_code}",
                               field="since")
    service = repo.service_by_code(session, permit.service_code)
    assert service is not None
    sub = Subscription(system_id=system.id, service_id=service.id, consumer_org_id=system.org_id,
                       provider_org_id=service.provider_org_id, url=url,
                       fields=list(permit.fields) if data.fields is not None else None, status="active",
                       resource_id=res.id, cursor=latest if data.since is None else data.since, attempts=0,
                       next_attempt_at=now, created_by=f"system:{system.code}", created_at=now, updated_at=now)
    session.add(sub)
    session.flush()
    secret = _new_secret(sub, master)
    session.flush()
    return sub, secret


def _live_of(session: Session, system_id: int, service_id: int) -> Sequence[Subscription]:
    return session.scalars(select(Subscription).where(
        Subscription.system_id == system_id, Subscription.service_id == service_id,
        Subscription.status != "deleted")).all()


def _new_secret(sub: Subscription, master: str) -> str:
    secret = f"{SECRET_PREFIX}{signing.new_signing_secret()[4:]}"
    sub.secret_enc = signing.seal(secret, master, seal_binding(sub.id))
    sub.secret_hint = secret[-4:]
    return secret


def seal_binding(subscription_id: int) -> str:
    """What a subscription's sealed secret is bound to (the AAD of SM4-GCM): its id, in a form no
    system code can take (codes have no ':'), so a secret cannot be moved to another row."""
    return f"subscription:{subscription_id}"


def unseal_secret(sub: Subscription, master: str) -> str | None:
    return signing.unseal(sub.secret_enc, master, seal_binding(sub.id)) if sub.secret_enc else None


def rotate_secret(session: Session, sub: Subscription, master: str) -> str:
    """A new signing secret, used from the next delivery on (shown once)."""
    _require_not_deleted(sub)
    secret = _new_secret(sub, master)
    sub.updated_at = utcnow()
    session.flush()
    return secret


def get_for_system(session: Session, system: System, subscription_id: int) -> Subscription:
    """A subscription of this system; those of other systems do not exist for it."""
    sub = session.get(Subscription, subscription_id)
    if sub is None or sub.system_id != system.id:
        raise NotFound(f"subscription {subscription_id} not found", field="subscription_id")
    return sub


def list_for_system(session: Session, system: System, *, service: str | None = None,
                    status: str | None = None) -> Sequence[Subscription]:
    stmt = select(Subscription).where(Subscription.system_id == system.id)
    return session.scalars(_filtered(session, stmt, service, status).order_by(Subscription.id)).all()


def change_status(session: Session, sub: Subscription, action: Action, *, now: datetime | None = None) -> Subscription:
    """pause, resume (paused or blocked), replay (dead: from the cursor, attempts reset), delete."""
    allowed, target = TRANSITIONS[action]
    if sub.status not in allowed:
        raise Conflict(f"subscription {sub.id} is {sub.status}; it cannot {action}"
                       + ("; replay a dead subscription" if action == "resume" and sub.status == "dead" else ""),
                       field="status")
    now = now or utcnow()
    sub.status = target
    if target == "active":
        sub.attempts, sub.next_attempt_at, sub.dead_at, sub.last_error = 0, now, None, None
    sub.updated_at = now
    session.flush()
    return sub


def _require_not_deleted(sub: Subscription) -> None:
    if sub.status == "deleted":
        raise Conflict(f"subscription {sub.id} is deleted", field="status")


# -- staff views ---------------------------------------------------------------------------------

def _may_see(actor: Actor, sub: Subscription) -> bool:
    return actor.can("exchange.read", sub.provider_org_id) or actor.can("exchange.read", sub.consumer_org_id)


def get_for_staff(session: Session, actor: Actor, subscription_id: int) -> Subscription:
    """A subscription the provider's or the consumer's staff (or the platform) may see."""
    sub = session.get(Subscription, subscription_id)
    if sub is None or not _may_see(actor, sub):
        raise NotFound(f"subscription {subscription_id} not found", field="subscription_id")
    return sub


def list_for_staff(session: Session, actor: Actor, *, service: str | None = None, status: str | None = None,
                   offset: int = 0, limit: int = 100) -> tuple[Sequence[Subscription], int]:
    """Department roles see the subscriptions their organization provides or consumes; the
    platform roles all of them."""
    if not actor.can("exchange.read"):
        raise PermissionDenied(f"role {actor.role} may not read exchange subscriptions")
    stmt = select(Subscription)
    if actor.via != "cli" and actor.role in ORG_ROLES:
        stmt = stmt.where(or_(Subscription.provider_org_id == actor.org_id,
                              Subscription.consumer_org_id == actor.org_id))
    stmt = _filtered(session, stmt, service, status)
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    return session.scalars(stmt.order_by(Subscription.id.desc()).offset(offset).limit(limit)).all(), total


def replay_by_staff(session: Session, actor: Actor, sub: Subscription) -> Subscription:
    """The provider's stewards and admins, the consumer's admin or the platform admin restart a
    dead-lettered subscription from its cursor."""
    if not (actor.can("service.publish", sub.provider_org_id) or actor.can("system.manage", sub.consumer_org_id)
            or actor.can("exchange.operate")):
        raise PermissionDenied(f"role {actor.role} may not replay this subscription")
    change_status(session, sub, "replay")
    audit(session, actor, "exchange.subscription.replay", f"subscription:{sub.id}",
          {"system": sub.system.code, "cursor": sub.cursor}, service=sub.service.code)
    return sub


def _filtered(session: Session, stmt: Select[Any], service: str | None, status: str | None) -> Select[Any]:
    if service is not None:
        found = repo.service_by_code(session, service)
        stmt = stmt.where(Subscription.service_id == (found.id if found else -1))
    if status is not None:
        return stmt.where(Subscription.status == status)
    return stmt.where(Subscription.status != "deleted")


# -- deliveries and output -----------------------------------------------------------------------

def deliveries(session: Session, sub: Subscription, *, status: str | None = None, offset: int = 0,
               limit: int = 100) -> tuple[Sequence[Delivery], int]:
    """The subscription's delivery attempts, newest first."""
    stmt = select(Delivery).where(Delivery.subscription_id == sub.id)
    if status is not None:
        stmt = stmt.where(Delivery.status == status)
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    return session.scalars(stmt.order_by(Delivery.id.desc()).offset(offset).limit(limit)).all(), total


def subscription_out(session: Session, sub: Subscription) -> SubscriptionOut:
    res = current_resource(session, sub.service)
    cursor_res = session.get(Resource, sub.resource_id) if sub.resource_id else None
    latest = int(res.last_seq or 0) if res is not None else None
    backlog = None
    if res is not None and latest is not None:
        backlog = latest - sub.cursor if res.id == sub.resource_id else latest
    return SubscriptionOut(
        id=sub.id, system=sub.system.code, consumer_org=sub.system.org.code, service=sub.service.code,
        provider_org=sub.service.provider.code, url=sub.url, fields=sub.fields, status=sub.status,
        cursor=sub.cursor, resource_version=cursor_res.version if cursor_res else None, latest_seq=latest,
        backlog=max(0, backlog) if backlog is not None else None, attempts=sub.attempts,
        next_attempt_at=sub.next_attempt_at, last_error=sub.last_error, last_delivered_at=sub.last_delivered_at,
        dead_at=sub.dead_at, secret_hint=sub.secret_hint, created_by=sub.created_by, created_at=sub.created_at,
        updated_at=sub.updated_at)


def delivery_out(d: Delivery) -> DeliveryOut:
    return DeliveryOut(id=d.id, delivery_id=d.delivery_id, attempt=d.attempt, first_seq=d.first_seq,
                       last_seq=d.last_seq, records=d.records, bytes=d.nbytes, status=d.status,
                       http_status=d.http_status, latency_ms=d.latency_ms, error=d.error, at=d.at)
