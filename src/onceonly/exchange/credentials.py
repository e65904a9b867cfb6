"""API keys of business systems: generated with `secrets`, shown once, stored as an SM3 hash,
found by a short prefix and compared in constant time. Rotation hands out a new key and keeps
the old one working for an overlap window, so a system can switch without downtime."""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.db import utcnow
from onceonly.errors import Conflict, NotFound
from onceonly.exchange import repository as repo
from onceonly.exchange import snapshot
from onceonly.exchange.errors import CallerRejected
from onceonly.exchange.models import Credential, System
from onceonly.exchange.schemas import KeyOut
from onceonly.exchange.staff_audit import audit
from onceonly.kit.crypto import sm3_hex

KEY_PREFIX = "ook_"
PREFIX_LENGTH = len(KEY_PREFIX) + 8  # "ook_" and 8 random characters: the lookup prefix
KEY_LENGTH = len(KEY_PREFIX) + 43  # token_urlsafe(32) is 43 characters
DEFAULT_OVERLAP = timedelta(hours=24)
KeyStatus = Literal["active", "overlap", "rotated", "expired", "revoked"]


def _new_key() -> tuple[str, str, str]:
    key = f"{KEY_PREFIX}{secrets.token_urlsafe(32)}"
    return key, key[:PREFIX_LENGTH], sm3_hex(key)


def key_status(cred: Credential, now: datetime | None = None) -> KeyStatus:
    now = now or utcnow()
    if cred.revoked_at is not None:
        return "revoked"
    if cred.expires_at is not None and cred.expires_at <= now:
        return "expired"
    if cred.rotated_at is not None:
        return "overlap" if cred.overlap_until is not None and cred.overlap_until > now else "rotated"
    return "active"


def get_key(session: Session, actor: Actor, key_id: int) -> Credential:
    cred = repo.credential_by_id(session, key_id)
    if cred is None or not (actor.can("system.manage", cred.system.org_id)
                            or actor.can("exchange.read", cred.system.org_id)):
        raise NotFound(f"key {key_id} not found", field="key_id")
    return cred


def create_key(session: Session, actor: Actor, system: System, *, days: int = 365,
               now: datetime | None = None) -> tuple[Credential, str]:
    """A new API key for the system; the key itself is returned once and never stored."""
    actor.require("system.manage", system.org_id)
    cred, key = _add(session, actor, system, days, now or utcnow())
    audit(session, actor, "exchange.key.create", f"system:{system.code}", {"key_id": cred.id, "days": days})
    return cred, key


def _add(session: Session, actor: Actor, system: System, days: int, now: datetime) -> tuple[Credential, str]:
    key, prefix, digest = _new_key()
    cred = Credential(system_id=system.id, prefix=prefix, key_hash=digest, hint=key[-4:], created_at=now,
                      created_by=actor.username, expires_at=now + timedelta(days=days))
    session.add(cred)
    session.flush()
    return cred, key


def rotate_key(session: Session, actor: Actor, cred: Credential, *, overlap: timedelta = DEFAULT_OVERLAP,
               days: int = 365, now: datetime | None = None) -> tuple[Credential, str]:
    """Replace a live key: the new key is returned once; the old one stays valid until
    now + overlap (never beyond its own expiry), then it is refused."""
    system = cred.system
    actor.require("system.manage", system.org_id)
    now = now or utcnow()
    status = key_status(cred, now)
    if status != "active":
        raise Conflict(f"key {cred.id} is {status}; only an active key can be rotated", field="key_id")
    new, key = _add(session, actor, system, days, now)
    cred.rotated_at = now
    cred.overlap_until = now + overlap
    if cred.expires_at is not None and cred.overlap_until > cred.expires_at:
        cred.overlap_until = cred.expires_at
    cred.replaced_by_id = new.id
    session.flush()
    audit(session, actor, "exchange.key.rotate", f"system:{system.code}",
          {"key_id": cred.id, "new_key_id": new.id, "overlap_until": cred.overlap_until.isoformat()})
    return new, key


def revoke_key(session: Session, actor: Actor, cred: Credential, reason: str = "",
               now: datetime | None = None) -> Credential:
    """Revocation takes effect at once, also for a key in its overlap window."""
    actor.require("system.manage", cred.system.org_id)
    if cred.revoked_at is not None:
        raise Conflict(f"key {cred.id} is already revoked", field="key_id")
    cred.revoked_at = now or utcnow()
    session.flush()
    audit(session, actor, "exchange.key.revoke", f"system:{cred.system.code}",
          {"key_id": cred.id, "reason": reason.strip()})
    return cred


_REFUSED: dict[KeyStatus, str] = {
    "revoked": "the API key has been revoked",
    "expired": "the API key has expired",
    "rotated": "the API key was replaced by a newer key and its overlap window has ended",
}


def authenticate(session: Session, key: str, now: datetime | None = None) -> Credential:
    """The credential of a presented key, valid now. A refusal speaks only of the presented key."""
    now = now or utcnow()
    digest = sm3_hex(key)  # hashed whatever the key looks like: the same work for every refusal
    cred = None
    if key.startswith(KEY_PREFIX) and len(key) == KEY_LENGTH:
        for candidate in snapshot.credentials(session, key[:PREFIX_LENGTH]):
            if hmac.compare_digest(candidate.key_hash, digest):
                cred = candidate
    if cred is None:
        raise CallerRejected("unknown API key")
    status = key_status(cred, now)
    if status in _REFUSED:
        raise CallerRejected(_REFUSED[status])
    if not cred.system.active:
        raise CallerRejected("the system of this API key is disabled")
    return cred


def authenticate_key(session: Session, key: str, now: datetime | None = None) -> System:
    """The system a presented key belongs to, its "last used" stamped (`authenticate`)."""
    now = now or utcnow()
    cred = authenticate(session, key, now)
    if touch_due(cred, now):
        try:
            with session.begin_nested():  # a busy SQLite must not fail the call
                touch(session, cred, now)
        except OperationalError:
            pass
    return cred.system


TOUCH_EVERY = timedelta(minutes=5)
_touched: dict[str, datetime] = {}  # key hash -> last stamp this process wrote (the cached copy keeps its old one)


def touch_due(cred: Credential, now: datetime) -> bool:
    """Whether the key's "last used" stamp is older than TOUCH_EVERY (as far as this process knows)."""
    last = max((t for t in (cred.last_used_at, _touched.get(cred.key_hash)) if t is not None), default=None)
    return last is None or now - last > TOUCH_EVERY


def touch(executor: Session | Connection, cred: Credential, now: datetime) -> None:
    """Stamp "last used" by statement: `cred` may be the process's cached copy (snapshot.py),
    which is never changed."""
    repo.touch_credential(executor, cred.id, now)
    _touched[cred.key_hash] = now


def key_out(cred: Credential, now: datetime | None = None) -> KeyOut:
    return KeyOut(id=cred.id, system=cred.system.code, prefix=cred.prefix, hint=cred.hint,
                  status=key_status(cred, now), created_at=cred.created_at, created_by=cred.created_by,
                  expires_at=cred.expires_at, revoked_at=cred.revoked_at, rotated_at=cred.rotated_at,
                  overlap_until=cred.overlap_until, replaced_by=cred.replaced_by_id, last_used_at=cred.last_used_at)
