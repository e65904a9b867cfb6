"""API keys: shown once, stored hashed, found by prefix; rotation with an overlap window;
revocation and expiry; refusals that speak only of the presented key."""

from __future__ import annotations

from datetime import timedelta

import pytest
from exchange_factories import add_system, fresh, ready
from sqlalchemy import select

from core_factories import CLI, add_org, add_user
from onceonly.db import Database, utcnow
from onceonly.errors import Conflict, PermissionDenied
from onceonly.exchange import credentials
from onceonly.exchange.errors import CallerRejected
from onceonly.exchange.models import Credential, System


@pytest.fixture(scope="module", autouse=True)
def _ready(db: Database) -> None:
    ready(db)


def new_system(db: Database) -> System:
    with db.session(write=True) as s:
        system, _ = add_system(s, add_org(s))
    return system


def refused(db: Database, key: str, when: timedelta = timedelta(0)) -> str:
    with db.session(write=True) as s, pytest.raises(CallerRejected) as info:
        credentials.authenticate_key(s, key, utcnow() + when)
    assert info.value.status == 401
    return info.value.message


def authenticates(db: Database, key: str, when: timedelta = timedelta(0)) -> str:
    with db.session(write=True) as s:
        return credentials.authenticate_key(s, key, utcnow() + when).code


def test_key_is_shown_once_and_stored_as_sm3_hash(db: Database) -> None:
    system = new_system(db)
    with db.session(write=True) as s:
        cred, key = credentials.create_key(s, CLI, fresh(s, system), days=30)
    assert key.startswith("ook_") and len(key) == credentials.KEY_LENGTH
    with db.session() as s:
        row = s.scalar(select(Credential).where(Credential.id == cred.id))
        assert row is not None
        assert row.prefix == key[:12] and row.hint == key[-4:]
        assert key not in (row.key_hash, row.prefix) and len(row.key_hash) == 64
        from onceonly.kit.crypto import sm3_hex

        assert row.key_hash == sm3_hex(key)
    assert authenticates(db, key) == system.code


def test_unknown_malformed_and_lookalike_keys(db: Database) -> None:
    system = new_system(db)
    with db.session(write=True) as s:
        _, key = credentials.create_key(s, CLI, fresh(s, system))
    lookalike = key[:12] + ("A" if key[12] != "A" else "B") + key[13:]  # same prefix, other secret
    for bad in ("", "ook_", "nope", key + "x", key[:-1], lookalike, "oo_" + key[4:], "'; DROP TABLE x; --",
                "𠀾" * 5000):
        assert refused(db, bad) == "unknown API key"


def test_expired_key(db: Database) -> None:
    system = new_system(db)
    with db.session(write=True) as s:
        _, key = credentials.create_key(s, CLI, fresh(s, system), days=1)
    assert authenticates(db, key, timedelta(hours=23)) == system.code
    assert "expired" in refused(db, key, timedelta(days=1, seconds=1))


def test_rotation_keeps_the_old_key_until_the_overlap_ends(db: Database) -> None:
    system = new_system(db)
    with db.session(write=True) as s:
        old, old_key = credentials.create_key(s, CLI, fresh(s, system))
    with db.session(write=True) as s:
        new, new_key = credentials.rotate_key(s, CLI, fresh(s, old), overlap=timedelta(hours=2))
    assert new_key != old_key
    with db.session() as s:
        stored_old = s.get(Credential, old.id)
        assert stored_old is not None and stored_old.replaced_by_id == new.id
        assert credentials.key_status(stored_old) == "overlap"
    # both work inside the overlap window
    assert authenticates(db, old_key, timedelta(hours=1)) == system.code
    assert authenticates(db, new_key, timedelta(hours=1)) == system.code
    # after it only the new one
    message = refused(db, old_key, timedelta(hours=2, seconds=1))
    assert "replaced" in message and "overlap" in message
    assert authenticates(db, new_key, timedelta(hours=3)) == system.code
    with db.session(write=True) as s:
        stored = s.get(Credential, old.id)
        assert stored is not None and credentials.key_status(stored, utcnow() + timedelta(hours=3)) == "rotated"
        with pytest.raises(Conflict):  # only an active key rotates
            credentials.rotate_key(s, CLI, stored)


def test_default_overlap_is_24_hours_and_never_past_expiry(db: Database) -> None:
    system = new_system(db)
    with db.session(write=True) as s:
        old, old_key = credentials.create_key(s, CLI, fresh(s, system), days=365)
        now = utcnow()
        credentials.rotate_key(s, CLI, old, now=now)
        assert old.overlap_until == now + timedelta(hours=24)
        short, _ = credentials.create_key(s, CLI, fresh(s, system), days=1)
        credentials.rotate_key(s, CLI, short, overlap=timedelta(days=5), now=now)
        assert short.overlap_until == short.expires_at
    assert authenticates(db, old_key, timedelta(hours=23)) == system.code
    assert "replaced" in refused(db, old_key, timedelta(hours=25))


def test_revocation_is_immediate_even_during_overlap(db: Database) -> None:
    system = new_system(db)
    with db.session(write=True) as s:
        old, old_key = credentials.create_key(s, CLI, fresh(s, system))
        _, new_key = credentials.rotate_key(s, CLI, old)
    with db.session(write=True) as s:
        credentials.revoke_key(s, CLI, s.get(Credential, old.id), "leaked in a log file")  # type: ignore[arg-type]
    assert "revoked" in refused(db, old_key)
    assert authenticates(db, new_key) == system.code
    with db.session(write=True) as s, pytest.raises(Conflict):
        credentials.revoke_key(s, CLI, s.get(Credential, old.id))  # type: ignore[arg-type]


def test_disabled_system_is_refused(db: Database) -> None:
    system = new_system(db)
    with db.session(write=True) as s:
        _, key = credentials.create_key(s, CLI, fresh(s, system))
        fresh(s, system).active = False
    assert "disabled" in refused(db, key)


def test_refusals_do_not_name_other_systems(db: Database) -> None:
    a, b = new_system(db), new_system(db)
    with db.session(write=True) as s:
        cred, key = credentials.create_key(s, CLI, fresh(s, a))
        credentials.revoke_key(s, CLI, cred)
        credentials.create_key(s, CLI, fresh(s, b))
    for message in (refused(db, key), refused(db, "ook_" + "x" * 43)):
        assert a.code not in message and b.code not in message


def test_last_used_is_stamped(db: Database) -> None:
    system = new_system(db)
    with db.session(write=True) as s:
        cred, key = credentials.create_key(s, CLI, fresh(s, system))
    authenticates(db, key)
    with db.session() as s:
        stored = s.get(Credential, cred.id)
        assert stored is not None and stored.last_used_at is not None


def test_key_management_is_scoped_to_the_owning_org(db: Database) -> None:
    system = new_system(db)
    with db.session(write=True) as s:
        own_admin = add_user(s, "dept_admin", fresh(s, system).org)[1]
        other_admin = add_user(s, "dept_admin", add_org(s))[1]
        own_steward = add_user(s, "steward", fresh(s, system).org)[1]
        auditor = add_user(s, "auditor")[1]
        cred, _ = credentials.create_key(s, own_admin, fresh(s, system))
        for actor in (other_admin, own_steward, auditor):
            with pytest.raises(PermissionDenied):
                credentials.create_key(s, actor, fresh(s, system))
            with pytest.raises(PermissionDenied):
                credentials.rotate_key(s, actor, cred)
            with pytest.raises(PermissionDenied):
                credentials.revoke_key(s, actor, cred)
        admin = add_user(s, "platform_admin")[1]
        credentials.rotate_key(s, admin, cred)
