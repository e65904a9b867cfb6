"""Business systems (业务系统): the API clients of the exchange, one department's each.
A department admin manages its own systems; the platform admin manages all."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.accounts.roles import ORG_ROLES
from onceonly.catalog.orgs import get_org
from onceonly.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from onceonly.exchange import repository as repo
from onceonly.exchange import signing
from onceonly.exchange.models import System
from onceonly.exchange.schemas import SYSTEM_CODE_RE, SystemIn, SystemOut, SystemPatch
from onceonly.exchange.staff_audit import audit

# Path words of the exchange API: a system named like one would make its URLs ambiguous.
RESERVED_CODES = frozenset({"systems", "services", "applications", "grants", "keys", "verify", "records",
                            "export", "changes", "subscription", "subscriptions", "stats", "me"})


def checked_code(code: str, kind: str, pattern: re.Pattern[str], allowed: str) -> str:
    """A system or service code: the pattern, and none of the words the exchange's routes use."""
    code = code.strip()
    if not pattern.match(code):
        raise ValidationFailed(f"{kind} code must be 2-40 {allowed}, starting with a letter", field="code")
    if code.lower() in RESERVED_CODES:
        raise ValidationFailed(f"{kind} code {code} is a reserved word", field="code")
    return code


def check_code(code: str) -> str:
    return checked_code(code, "system", SYSTEM_CODE_RE, "letters, digits, '_', '.', '-'")


def get_system(session: Session, code: str) -> System:
    system = repo.system_by_code(session, code.strip()) if len(code) <= 40 else None
    if system is None:
        raise NotFound(f"system {code[:40]} not found", field="system")
    return system


def require_view(actor: Actor, system: System) -> None:
    """Its own department's staff and the platform roles may see a system; to others it does
    not exist (404, so codes of other departments' systems are not confirmed)."""
    if not actor.can("exchange.read", system.org_id) and not actor.can("system.manage", system.org_id):
        raise NotFound(f"system {system.code} not found", field="system")


def visible_systems(session: Session, actor: Actor) -> Sequence[System]:
    if actor.via != "cli" and actor.role in ORG_ROLES:
        return repo.systems(session, actor.org_id)
    if not actor.can("exchange.read") and not actor.can("system.manage"):
        raise PermissionDenied(f"role {actor.role} may not list exchange systems")
    return repo.systems(session)


def create_system(session: Session, actor: Actor, data: SystemIn, master: str) -> tuple[System, str | None]:
    """Register a system; with signing required, its signing secret is returned (shown once)."""
    code = check_code(data.code)
    org = get_org(session, data.org)
    actor.require("system.manage", org.id)
    if repo.system_by_code(session, code):
        raise Conflict(f"system {code} already exists", field="code")
    system = System(code=code, name=data.name.strip(), org_id=org.id, contact=data.contact.strip(),
                    signing_required=data.signing_required, active=True)
    secret = _new_secret(system, master) if data.signing_required else None
    session.add(system)
    session.flush()
    audit(session, actor, "exchange.system.create", f"system:{code}",
          {"org": org.code, "signing_required": data.signing_required})
    return system, secret


def update_system(session: Session, actor: Actor, system: System, patch: SystemPatch,
                  master: str) -> tuple[System, str | None]:
    """Edit name, contact, active, signing. Turning signing on without a secret makes one
    (returned once); a disabled system's keys stop working at once."""
    actor.require("system.manage", system.org_id)
    changes = patch.model_dump(exclude_none=True)
    secret = None
    if "name" in changes:
        system.name = changes["name"].strip()
    if "contact" in changes:
        system.contact = changes["contact"].strip()
    if "active" in changes:
        system.active = changes["active"]
    if "signing_required" in changes:
        system.signing_required = changes["signing_required"]
        if system.signing_required and not system.signing_secret_enc:
            secret = _new_secret(system, master)
    session.flush()
    audit(session, actor, "exchange.system.update", f"system:{system.code}", changes)
    return system, secret


def rotate_signing_secret(session: Session, actor: Actor, system: System, master: str) -> str:
    """A new signing secret replaces the old one at once (requests signed with the old fail)."""
    actor.require("system.manage", system.org_id)
    secret = _new_secret(system, master)
    session.flush()
    audit(session, actor, "exchange.system.signing_secret", f"system:{system.code}",
          {"hint": system.signing_secret_hint})
    return secret


def _new_secret(system: System, master: str) -> str:
    secret = signing.new_signing_secret()
    system.signing_secret_enc = signing.seal(secret, master, system.code)
    system.signing_secret_hint = secret[-4:]
    return secret


def system_out(system: System) -> SystemOut:
    return SystemOut(code=system.code, name=system.name, org=system.org.code, org_name=system.org.name,
                     contact=system.contact, active=system.active, signing_required=system.signing_required,
                     signing_secret_hint=system.signing_secret_hint, created_at=system.created_at)
