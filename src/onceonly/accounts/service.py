"""Account rules: creation, login with lockout, web sessions with idle timeout, API tokens,
and the staff action record every change leaves."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from onceonly.accounts import repository as repo
from onceonly.accounts.actor import Actor
from onceonly.accounts.models import ApiToken, StaffAction, User, WebSession
from onceonly.accounts.roles import ORG_ROLES, ROLES, ROLES_A_DEPT_ADMIN_MAY_GRANT
from onceonly.db import utcnow
from onceonly.errors import (
    AccountLocked,
    AuthenticationRequired,
    Conflict,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from onceonly.kit.crypto import new_token, sm3_hex
from onceonly.kit.passwords import complexity_problem, generate_password, hash_password, verify_password

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{2,64}$")
TOKEN_PREFIX = "oo"


def record(
    session: Session, actor: Actor, action: str, target: str = "", detail: dict[str, Any] | None = None,
    outcome: str = "ok",
) -> None:
    """Append a staff action; flushed with the change it describes, so both commit or neither."""
    session.add(StaffAction(
        at=utcnow(), user_id=actor.user_id, username=actor.username, action=action, target=target,
        detail=detail or {}, ip=actor.ip, outcome=outcome,
    ))


def create_user(
    session: Session, actor: Actor, username: str, role: str, org_id: int | None,
    display_name: str = "", password: str | None = None,
) -> tuple[User, str]:
    """Create a staff account; returns the user and the password (generated unless given)."""
    if not USERNAME_RE.match(username):
        raise ValidationFailed("username must be 2-64 letters, digits, '_', '.', '-'", field="username")
    if role not in ROLES:
        raise ValidationFailed(f"unknown role {role!r}; one of {', '.join(ROLES)}", field="role")
    if role in ORG_ROLES and org_id is None:
        raise ValidationFailed(f"role {role} needs an organization", field="org")
    if role not in ORG_ROLES and org_id is not None:
        raise ValidationFailed(f"role {role} is platform-wide and takes no organization", field="org")
    actor.require("user.manage", org_id)
    if actor.role == "dept_admin" and role not in ROLES_A_DEPT_ADMIN_MAY_GRANT:
        raise PermissionDenied(f"a department admin may only create {', '.join(sorted(ROLES_A_DEPT_ADMIN_MAY_GRANT))}")
    if repo.user_by_name(session, username):
        raise Conflict(f"user {username} already exists", field="username")
    if password is None:
        password = generate_password()
    elif problem := complexity_problem(password):
        raise ValidationFailed(problem, field="password")
    user = User(username=username, role=role, org_id=org_id, display_name=display_name or username,
                password_hash=hash_password(password))
    session.add(user)
    session.flush()
    record(session, actor, "user.create", f"user:{username}", {"role": role, "org_id": org_id})
    return user, password


def _require_manage(actor: Actor, user: User) -> None:
    """May `actor` manage this account? A department admin only manages its own department's
    stewards and reviewers (never a platform account, whose org is None)."""
    actor.require("user.manage", user.org_id)
    if actor.role == "dept_admin" and (
        user.org_id is None or user.org_id != actor.org_id or user.role not in ROLES_A_DEPT_ADMIN_MAY_GRANT
    ):
        raise PermissionDenied(
            f"a department admin may only manage {', '.join(sorted(ROLES_A_DEPT_ADMIN_MAY_GRANT))} of its own org")


def set_password(session: Session, actor: Actor, user: User, new_password: str) -> None:
    """A reset by an account manager also ends the user's sessions and revokes their tokens:
    whoever held the old credentials is out."""
    if actor.user_id != user.id:
        _require_manage(actor, user)
    if problem := complexity_problem(new_password):
        raise ValidationFailed(problem, field="password")
    user.password_hash = hash_password(new_password)
    user.failed_logins = 0
    user.locked_until = None
    if actor.user_id != user.id:
        end_all_sessions(session, user)
        now = utcnow()
        for token in repo.tokens_of(session, user.id):
            if token.revoked_at is None:
                token.revoked_at = now
    record(session, actor, "user.password", f"user:{user.username}")


def change_own_password(session: Session, actor: Actor, current: str, new_password: str) -> None:
    """Self-service change: the current password proves it is really the user."""
    user = get_user(session, actor.username)
    if not verify_password(user.password_hash, current):
        record(session, actor, "user.password", f"user:{user.username}", outcome="denied")
        raise ValidationFailed("当前密码不正确 / the current password is wrong", field="current_password")
    if current == new_password:
        raise ValidationFailed("新密码不能与当前密码相同 / choose a different password", field="new_password")
    if problem := complexity_problem(new_password):
        raise ValidationFailed(problem, field="new_password")
    set_password(session, actor, user, new_password)


def set_active(session: Session, actor: Actor, user: User, active: bool) -> None:
    _require_manage(actor, user)
    user.active = active
    if not active:
        end_all_sessions(session, user)
    record(session, actor, "user.enable" if active else "user.disable", f"user:{user.username}")


def authenticate(session: Session, username: str, password: str, ip: str | None,
                 max_failed: int, lockout_minutes: int) -> User:
    """Check a password; after `max_failed` failures in a row the account locks for a while.
    Failures are recorded too, since they matter to the security admin.

    The failure count and its record are added to the session before the error is raised: the
    caller must still COMMIT them (catch the error inside its unit of work), or a rollback would
    undo the count and the lockout could never trigger."""
    user = repo.user_by_name(session, username, for_update=True)
    now = utcnow()
    anon = Actor(user_id=None, username=username[:64] or "?", role="anonymous", ip=ip)
    if user is None or not user.active:
        verify_password(_dummy_hash(), password)  # same cost whether or not the user exists
        record(session, anon, "auth.login", f"user:{username[:64]}", outcome="denied")
        raise AuthenticationRequired("用户名或密码错误 / wrong username or password")
    if user.locked_until and user.locked_until > now:
        record(session, anon, "auth.login", f"user:{username}", {"reason": "locked"}, outcome="denied")
        raise AccountLocked(f"账号已锁定至 {user.locked_until:%H:%M} UTC / account locked after repeated failures")
    if not verify_password(user.password_hash, password):
        user.failed_logins += 1
        detail: dict[str, Any] = {"failed_logins": user.failed_logins}
        if user.failed_logins >= max_failed:
            user.locked_until = now + timedelta(minutes=lockout_minutes)
            user.failed_logins = 0
            detail["locked"] = True
        record(session, anon, "auth.login", f"user:{username}", detail, outcome="denied")
        raise AuthenticationRequired("用户名或密码错误 / wrong username or password")
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    record(session, _actor_of(user, ip), "auth.login", f"user:{username}")
    return user


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Made on first use, not at import: every CLI command imports this module."""
    return hash_password(secrets.token_urlsafe(16))


def _actor_of(user: User, ip: str | None, via: str = "web") -> Actor:
    return Actor(user_id=user.id, username=user.username, role=user.role, org_id=user.org_id, ip=ip, via=via)


def actor_for(user: User, ip: str | None, via: str = "web") -> Actor:
    return _actor_of(user, ip, via)


def start_web_session(session: Session, user: User, ip: str | None) -> str:
    token = secrets.token_urlsafe(32)
    session.add(WebSession(token_hash=sm3_hex(token), user_id=user.id, ip=ip))
    return token


def _touch(session: Session, row: WebSession | ApiToken, attr: str, now: datetime) -> None:
    """Best-effort "last seen" stamp, in a savepoint: in a read-only request on SQLite a
    concurrent writer can make this one write fail ("database is locked"); the request must
    still be answered, and the next one records the time."""
    try:
        with session.begin_nested():
            setattr(row, attr, now)
    except OperationalError:
        pass


def resolve_web_session(session: Session, token: str, idle_minutes: int) -> User | None:
    """The user of a live session; a session idle longer than the timeout is ended."""
    ws = repo.web_session_by_hash(session, sm3_hex(token))
    if ws is None or ws.ended_at is not None:
        return None
    now = utcnow()
    if now - ws.last_seen_at > timedelta(minutes=idle_minutes) or not ws.user.active:
        ws.ended_at = now
        return None
    if now - ws.last_seen_at > timedelta(seconds=30):  # limit writes on busy pages
        _touch(session, ws, "last_seen_at", now)
    return ws.user


def end_web_session(session: Session, token: str) -> None:
    ws = repo.web_session_by_hash(session, sm3_hex(token))
    if ws and ws.ended_at is None:
        ws.ended_at = utcnow()
        record(session, _actor_of(ws.user, ws.ip), "auth.logout", f"user:{ws.user.username}")


def end_all_sessions(session: Session, user: User) -> None:
    from sqlalchemy import update

    session.execute(update(WebSession).where(WebSession.user_id == user.id, WebSession.ended_at.is_(None))
                    .values(ended_at=utcnow()))


def create_api_token(session: Session, actor: Actor, user: User, name: str,
                     days: int | None = 365) -> tuple[ApiToken, str]:
    """A personal token for scripts. Only its SM3 hash is stored; the token is shown once."""
    if actor.user_id != user.id:
        _require_manage(actor, user)
    token, digest = new_token(TOKEN_PREFIX)
    row = ApiToken(user_id=user.id, name=name[:100] or "token", token_hash=digest, hint=token[-4:],
                   expires_at=utcnow() + timedelta(days=days) if days else None)
    session.add(row)
    session.flush()
    record(session, actor, "token.create", f"user:{user.username}", {"token_id": row.id, "name": row.name})
    return row, token


def revoke_api_token(session: Session, actor: Actor, token: ApiToken) -> None:
    if actor.user_id != token.user_id:
        _require_manage(actor, token.user)
    token.revoked_at = utcnow()
    record(session, actor, "token.revoke", f"user:{token.user.username}", {"token_id": token.id})


def resolve_api_token(session: Session, token: str) -> User:
    row = repo.token_by_hash(session, sm3_hex(token))
    now = utcnow()
    if row is None or row.revoked_at is not None or (row.expires_at and row.expires_at < now):
        raise AuthenticationRequired("API token is unknown, revoked or expired")
    if not row.user.active:
        raise AuthenticationRequired("the token's user is disabled")
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=5):
        _touch(session, row, "last_used_at", now)
    return row.user


def get_user(session: Session, username: str) -> User:
    user = repo.user_by_name(session, username)
    if user is None:
        raise NotFound(f"user {username} not found", field="username")
    return user
