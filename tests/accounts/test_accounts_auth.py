"""Logins with lockout, web sessions with idle timeout, personal API tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from core_factories import CLI, add_org, unique
from onceonly.accounts import repository as repo
from onceonly.accounts import service
from onceonly.accounts.models import ApiToken, StaffAction, User, WebSession
from onceonly.db import Database, utcnow
from onceonly.errors import AccountLocked, AuthenticationRequired, PlatformError
from onceonly.kit.crypto import sm3_hex
from onceonly.ops.setup import initialize

PASSWORD = "Corr3ct-Horse-Battery"


@pytest.fixture(scope="module", autouse=True)
def ready(db: Database) -> None:
    initialize(db)


def new_user(db: Database, role: str = "steward") -> str:
    name = unique("login")
    with db.session() as s:
        org = add_org(s) if role == "steward" else None
        service.create_user(s, CLI, name, role, org.id if org else None, password=PASSWORD)
    return name


def login(db: Database, name: str, password: str) -> PlatformError | User:
    """One login attempt as the web does it: the outcome (even a failure) is committed."""
    with db.session() as s:
        try:
            return service.authenticate(s, name, password, "203.0.113.5", max_failed=5, lockout_minutes=15)
        except PlatformError as exc:
            return exc


def user(db: Database, name: str) -> User:
    with db.session() as s:
        found = repo.user_by_name(s, name)
        assert found is not None
        return found


def test_correct_password_logs_in(db: Database) -> None:
    name = new_user(db)
    result = login(db, name, PASSWORD)
    assert isinstance(result, User) and result.username == name
    assert user(db, name).last_login_at is not None


def test_wrong_password_and_unknown_user_get_the_same_answer(db: Database) -> None:
    name = new_user(db)
    wrong = login(db, name, "nope")
    unknown = login(db, unique("nobody"), "nope")
    assert isinstance(wrong, AuthenticationRequired) and isinstance(unknown, AuthenticationRequired)
    assert wrong.message == unknown.message


def test_lockout_after_five_failures_even_with_the_right_password(db: Database) -> None:
    name = new_user(db)
    for attempt in range(1, 5):
        assert isinstance(login(db, name, f"wrong-{attempt}"), AuthenticationRequired)
        assert user(db, name).failed_logins == attempt
    assert isinstance(login(db, name, "wrong-5"), AuthenticationRequired)
    locked = user(db, name)
    assert locked.locked_until is not None and locked.locked_until > utcnow() + timedelta(minutes=14)
    assert isinstance(login(db, name, PASSWORD), AccountLocked)
    # the lock ends by itself
    with db.session() as s:
        row = repo.user_by_name(s, name)
        assert row is not None
        row.locked_until = utcnow() - timedelta(seconds=1)
    assert isinstance(login(db, name, PASSWORD), User)
    with db.session() as s:
        denied = s.scalars(select(StaffAction).where(StaffAction.target == f"user:{name}",
                                                     StaffAction.outcome == "denied")).all()
        assert len(denied) == 6  # five wrong passwords and one attempt while locked
        assert all(r.ip == "203.0.113.5" for r in denied)
        assert denied[4].detail.get("locked") is True


def test_success_resets_the_failure_count(db: Database) -> None:
    name = new_user(db)
    for _ in range(4):
        login(db, name, "wrong")
    assert user(db, name).failed_logins == 4
    assert isinstance(login(db, name, PASSWORD), User)
    assert user(db, name).failed_logins == 0
    for _ in range(4):
        login(db, name, "wrong")
    assert isinstance(login(db, name, PASSWORD), User)  # not locked: the count started again


def test_disabled_user_cannot_log_in(db: Database) -> None:
    name = new_user(db)
    with db.session() as s:
        target = repo.user_by_name(s, name)
        assert target is not None
        service.set_active(s, CLI, target, False)
    assert isinstance(login(db, name, PASSWORD), AuthenticationRequired)


def test_reset_password_unlocks(db: Database) -> None:
    name = new_user(db)
    for _ in range(5):
        login(db, name, "wrong")
    with db.session() as s:
        target = repo.user_by_name(s, name)
        assert target is not None
        service.set_password(s, CLI, target, "Brand-N3w-Secret")
    assert isinstance(login(db, name, "Brand-N3w-Secret"), User)


# -- web sessions ------------------------------------------------------------------------------

def test_web_session_lives_while_used_and_ends_when_idle(db: Database) -> None:
    name = new_user(db)
    with db.session() as s:
        u = repo.user_by_name(s, name)
        assert u is not None
        token = service.start_web_session(s, u, "198.51.100.1")
    with db.session() as s:
        # stored hashed only
        ws = s.scalar(select(WebSession).where(WebSession.token_hash == sm3_hex(token)))
        assert ws is not None and s.scalar(select(WebSession).where(WebSession.token_hash == token)) is None
        found = service.resolve_web_session(s, token, idle_minutes=30)
        assert found is not None and found.username == name
        ws.last_seen_at = utcnow() - timedelta(minutes=29)
    with db.session() as s:
        assert service.resolve_web_session(s, token, idle_minutes=30) is not None  # and touched
        ws = s.scalar(select(WebSession).where(WebSession.token_hash == sm3_hex(token)))
        assert ws is not None and utcnow() - ws.last_seen_at < timedelta(minutes=1)
        ws.last_seen_at = utcnow() - timedelta(minutes=31)
    with db.session() as s:
        assert service.resolve_web_session(s, token, idle_minutes=30) is None
    with db.session() as s:
        ws = s.scalar(select(WebSession).where(WebSession.token_hash == sm3_hex(token)))
        assert ws is not None and ws.ended_at is not None
        ws.last_seen_at = utcnow()  # an ended session does not come back
    with db.session() as s:
        assert service.resolve_web_session(s, token, idle_minutes=30) is None


def test_logout_ends_the_session(db: Database) -> None:
    name = new_user(db)
    with db.session() as s:
        u = repo.user_by_name(s, name)
        assert u is not None
        token = service.start_web_session(s, u, "198.51.100.2")
    with db.session() as s:
        service.end_web_session(s, token)
    with db.session() as s:
        assert service.resolve_web_session(s, token, idle_minutes=30) is None
        logout = s.scalar(select(StaffAction).where(StaffAction.target == f"user:{name}",
                                                    StaffAction.action == "auth.logout"))
        assert logout is not None and logout.ip == "198.51.100.2"
    with db.session() as s:
        service.end_web_session(s, token)  # twice is harmless
        service.end_web_session(s, "never-issued")


def test_disabling_a_user_ends_their_sessions(db: Database) -> None:
    name = new_user(db)
    with db.session() as s:
        u = repo.user_by_name(s, name)
        assert u is not None
        token = service.start_web_session(s, u, None)
    with db.session() as s:
        u = repo.user_by_name(s, name)
        assert u is not None
        service.set_active(s, CLI, u, False)
    with db.session() as s:
        assert service.resolve_web_session(s, token, idle_minutes=30) is None


# -- API tokens --------------------------------------------------------------------------------

def test_api_token_hashed_at_rest_shown_once(db: Database) -> None:
    name = new_user(db)
    with db.session() as s:
        u = repo.user_by_name(s, name)
        assert u is not None
        row, token = service.create_api_token(s, CLI, u, "nightly etl", days=30)
        token_id = row.id
    with db.session() as s:
        stored = s.get(ApiToken, token_id)
        assert stored is not None
        assert stored.token_hash == sm3_hex(token) and len(stored.token_hash) == 64
        # the secret is nowhere in the row
        assert all(token not in str(getattr(stored, c)) for c in ("token_hash", "hint", "name"))
        assert stored.hint == token[-4:]
        assert stored.expires_at is not None and stored.expires_at - utcnow() > timedelta(days=29)
        assert service.resolve_api_token(s, token).username == name


def test_revoked_token_is_rejected(db: Database) -> None:
    name = new_user(db)
    with db.session() as s:
        u = repo.user_by_name(s, name)
        assert u is not None
        row, token = service.create_api_token(s, CLI, u, "script")
    with db.session() as s:
        stored = s.get(ApiToken, row.id)
        assert stored is not None
        actor = service.actor_for(stored.user, None)
        service.revoke_api_token(s, actor, stored)  # a user revokes their own token
    with db.session() as s, pytest.raises(AuthenticationRequired):
        service.resolve_api_token(s, token)


def test_expired_or_unknown_token_is_rejected(db: Database) -> None:
    name = new_user(db)
    with db.session() as s:
        u = repo.user_by_name(s, name)
        assert u is not None
        row, token = service.create_api_token(s, CLI, u, "short", days=1)
    with db.session() as s:
        stored = s.get(ApiToken, row.id)
        assert stored is not None
        stored.expires_at = utcnow() - timedelta(seconds=1)
    with db.session() as s:
        with pytest.raises(AuthenticationRequired):
            service.resolve_api_token(s, token)
        with pytest.raises(AuthenticationRequired):
            service.resolve_api_token(s, token + "x")
        with pytest.raises(AuthenticationRequired):
            service.resolve_api_token(s, "")


def test_token_of_disabled_user_is_rejected(db: Database) -> None:
    name = new_user(db)
    with db.session() as s:
        u = repo.user_by_name(s, name)
        assert u is not None
        _, token = service.create_api_token(s, CLI, u, "script")
        service.set_active(s, CLI, u, False)
    with db.session() as s, pytest.raises(AuthenticationRequired):
        service.resolve_api_token(s, token)


def test_user_may_not_make_tokens_for_someone_else(db: Database) -> None:
    a, b = new_user(db), new_user(db)
    with db.session() as s:
        ua, ub = repo.user_by_name(s, a), repo.user_by_name(s, b)
        assert ua is not None and ub is not None
        from onceonly.errors import PermissionDenied

        with pytest.raises(PermissionDenied):
            service.create_api_token(s, service.actor_for(ua, None), ub, "theirs")
