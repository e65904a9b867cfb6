"""The per-process cache of exchange metadata (snapshot.py) and the epoch token that keeps it
honest (migration 0007): a committed change is seen by the very next call, in this process or
another; an uncommitted or rolled-back one never gets into the cache."""

from __future__ import annotations

from datetime import timedelta

import pytest
from exchange_factories import World, approved, fresh, ready, world
from sqlalchemy import select, update

from onceonly.catalog.models import Resource
from onceonly.db import Database, utcnow
from onceonly.exchange import credentials, snapshot
from onceonly.exchange.enforcement import authorize
from onceonly.exchange.errors import CallerRejected, GrantRevoked
from onceonly.exchange.models import Credential, Grant


@pytest.fixture(scope="module", autouse=True)
def _ready(db: Database) -> None:
    ready(db)


@pytest.fixture
def w(db: Database) -> World:
    return world(db)


def token(db: Database) -> int:
    with db.session() as s:
        return snapshot.token(s)


def test_the_token_moves_with_metadata_changes_only(db: Database, w: World) -> None:
    app = approved(w, ["sex"])
    before = token(db)
    with db.session(write=True) as s:  # per-call and per-load updates leave it alone
        s.execute(update(Credential).values(last_used_at=utcnow()))
        s.execute(update(Resource).where(Resource.id == w.person.id).values(last_seq=Resource.last_seq + 1))
    assert token(db) == before
    with db.session(write=True) as s:
        s.execute(update(Grant).where(Grant.id == app.grant_id).values(rate_limit=7))
    changed = token(db)
    assert changed != before
    with pytest.raises(RuntimeError), db.session(write=True) as s:  # rolled back: the token is as it was
        s.execute(update(Grant).where(Grant.id == app.grant_id).values(rate_limit=8))
        assert snapshot.token(s) != changed  # the transaction sees its own change
        raise RuntimeError("rolled back")
    assert token(db) == changed


def test_lookups_are_cached_until_a_change_commits(db: Database, w: World) -> None:
    app = approved(w, ["sex"], rate_limit=11)
    code = w.person_service.code
    with db.session() as s:
        authorize(s, fresh(s, w.system), code, "query", count=False)
        snap = snapshot.snapshot_of(s)
    assert snap is not None
    loads = snap.loads
    with db.session() as s:
        first = snapshot.grant(s, w.system.id, w.person_service.id)
        assert authorize(s, fresh(s, w.system), code, "query", count=False).rate_limit == 11
    with db.session() as s:
        assert snapshot.grant(s, w.system.id, w.person_service.id) is first  # the same cached object
    assert snap.loads == loads
    with db.session(write=True) as s:
        fresh(s, w.system)  # a read in a writing session changes nothing
        s.execute(update(Grant).where(Grant.id == app.grant_id).values(rate_limit=12))
    with db.session() as s:
        assert authorize(s, fresh(s, w.system), code, "query", count=False).rate_limit == 12
    assert snap.loads > loads


def test_an_uncommitted_change_is_seen_by_its_own_transaction_and_never_cached(db: Database, w: World) -> None:
    app = approved(w, ["sex"])
    code = w.person_service.code
    with db.session() as s:
        authorize(s, fresh(s, w.system), code, "query", count=False)  # cached as committed
    with pytest.raises(RuntimeError), db.session(write=True) as s:
        grant = s.get(Grant, app.grant_id)
        assert grant is not None
        grant.revoked_at = utcnow()
        s.flush()
        with pytest.raises(GrantRevoked):  # its own change, not the cached grant
            authorize(s, fresh(s, w.system), code, "query", count=False)
        raise RuntimeError("rolled back")
    with db.session() as s:  # the rolled-back revocation is nowhere
        assert authorize(s, fresh(s, w.system), code, "query", count=False).fields == ("sex",)


def test_a_revoked_key_is_refused_at_once(db: Database, w: World) -> None:
    now = utcnow()
    with db.session() as s:
        assert credentials.authenticate(s, w.key, now).system.code == w.system.code
    with db.session(write=True) as s:
        cred = s.scalars(select(Credential).where(Credential.system_id == w.system.id)).first()
        assert cred is not None
        credentials.revoke_key(s, w.operator, cred, "泄露")
    with db.session() as s, pytest.raises(CallerRejected, match="revoked"):
        credentials.authenticate(s, w.key, now + timedelta(seconds=1))


def test_the_last_used_stamp_is_written_without_touching_the_cache(db: Database, w: World) -> None:
    with db.session() as s:
        cached = credentials.authenticate(s, w.key)
    with db.session(write=True) as s:
        credentials.authenticate_key(s, w.key)
    with db.session() as s:
        stored = s.scalars(select(Credential).where(Credential.id == cached.id)).one()
        assert stored.last_used_at is not None
        assert credentials.authenticate(s, w.key) is cached  # still the cached copy, unchanged
    assert cached.last_used_at is None


def test_a_cache_miss_on_the_event_loop_gives_up_rather_than_wait_for_another_loader(
        db: Database, w: World) -> None:
    """PostgreSQL: a call reading on the event loop whose metadata is not cached does not wait
    for another thread's load (nor for a lock, on its own connection): it raises LoopWouldWait
    and the call runs in a worker thread. Elsewhere a miss waits its turn, as before."""
    import threading

    from onceonly.db import LOOP_TIMEOUTS_KEY, LoopWouldWait

    code = w.person_service.code
    with db.reading(on_loop=True) as s:
        snap = snapshot.snapshot_of(s)
        assert snap is not None
        assert bool(s.info.get(LOOP_TIMEOUTS_KEY)) is (not db.is_sqlite)
    snap.entries = {}  # nothing cached
    holder_ready, release = threading.Event(), threading.Event()

    def other_loader() -> None:
        with snap._lock:
            holder_ready.set()
            release.wait(10)

    holder = threading.Thread(target=other_loader)
    holder.start()
    holder_ready.wait(10)
    try:
        if not db.is_sqlite:
            with pytest.raises(LoopWouldWait), db.reading(on_loop=True) as s:
                snapshot.service(s, code)
            assert db.loop_gave_up(LoopWouldWait("x")) and db.loop_reads_now() is db.reads_on_loop  # no pause
        threading.Timer(0.2, release.set).start()
        with db.reading() as s:  # not on the loop: waits for the other load, then loads
            assert snapshot.service(s, code) is not None
    finally:
        release.set()
        holder.join(10)
    with db.reading(on_loop=True) as s:  # nobody loading: a miss on the loop loads as usual
        snap.entries = {}
        assert snapshot.service(s, code) is not None
    db.dispose()
