"""The exchange metadata every call reads, cached per process and checked per call.

A call needs the caller's credential and system, the service, the grant and the resource with
its fields: a dozen ORM loads that change only when staff change something. Each process keeps
them, loaded once, under the epoch token of migration 0007 (a trigger changes the token with
every committed change to those tables). A lookup reads the token in the caller's own
transaction; when it equals the cache's, the cached rows are what that transaction would load.

A miss loads on the snapshot's own connection (one loader at a time, so a burst of misses never
waits on the request pool), in a transaction that reads the token too. If that token differs
from the caller's — a change committed in between, or the caller's own transaction changed
metadata and has not committed — the caller loads from its own session and nothing is cached.

Cached objects are detached, fully loaded and shared between threads: read them, never change
them or attach them to a session, and do not read what the token does not cover
(`Resource.last_seq`, `Resource.updated_at`, `Credential.last_used_at`)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import Engine, event
from sqlalchemy.orm import ORMExecuteState, Session

from onceonly.catalog import repository as catalog_repo
from onceonly.catalog.models import Resource
from onceonly.db import (
    LOOP_LOCK_TIMEOUT_MS,
    LOOP_TIMEOUTS_KEY,
    Database,
    LoopWouldWait,
    connection_of,
    loop_timeouts,
    make_engine,
)
from onceonly.exchange import repository as repo
from onceonly.exchange.models import Credential, Grant, Service

T = TypeVar("T")
MAX_ENTRIES = 10_000  # a cache this full is dropped and refilled (callers are authenticated; keys are few)
_MISS = object()
_MEMO = "onceonly.exchange.epoch_token"  # session.info: (transaction, token)


def token(session: Session) -> int:
    """The epoch token as this transaction sees it: read once per transaction, again after the
    transaction has written anything through the session (which may have changed it)."""
    conn = connection_of(session)
    # The ORM's transaction too: in a plain session (staff changes) it may have committed, and
    # so written, since the token was read.
    transactions = (conn.get_transaction(), session.get_transaction())
    memo = session.info.get(_MEMO)
    if memo is not None and transactions[0] is not None and memo[0] == transactions:
        return int(memo[1])
    value = repo.epoch_token(conn)
    session.info[_MEMO] = ((conn.get_transaction(), session.get_transaction()), value)
    return value


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _context: Any) -> None:
    session.info.pop(_MEMO, None)


@event.listens_for(Session, "do_orm_execute")
def _executed(state: ORMExecuteState) -> None:
    if not state.is_select:
        state.session.info.pop(_MEMO, None)


class Snapshot:
    """One database's cache in this process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.token: int | None = None
        self.entries: dict[tuple[Any, ...], Any] = {}
        self.loads = 0  # misses loaded (tests and observability)
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._loop_engine: Engine | None = None

    def get(self, session: Session, key: tuple[Any, ...], load: Callable[[Session], T],
            keep: Callable[[T], bool] = lambda _: True) -> T:
        """The cached value of `key`, or `load(session)`'s, cached when `keep` says so."""
        current = token(session)
        if current == self.token:
            hit = self.entries.get(key, _MISS)
            if hit is not _MISS:
                return cast(T, hit)
        on_loop = bool(session.info.get(LOOP_TIMEOUTS_KEY))  # a read on the event loop gives up rather than wait
        if not self._lock.acquire(timeout=LOOP_LOCK_TIMEOUT_MS / 1000 if on_loop else -1):
            raise LoopWouldWait("another call is loading the exchange metadata")
        try:
            with Session(self._loader(on_loop), expire_on_commit=False) as own:
                if token(own) != current:
                    return load(session)
                value = load(own)
                own.expunge_all()  # detached with everything loaded; leaving `with` only ends the read
            self.loads += 1
            if keep(value):
                if self.token != current or len(self.entries) >= MAX_ENTRIES:
                    self.entries, self.token = {}, current
                self.entries[key] = value
        finally:
            self._lock.release()
        return value

    def derived(self, session: Session, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
        """A value computed from cached lookups (which `compute` makes through this module), kept
        under the same token. Kept only if the cache still holds that token afterwards, that is,
        if what it was computed from is the committed metadata the caller's transaction sees."""
        current = token(session)
        if current == self.token:
            hit = self.entries.get(key, _MISS)
            if hit is not _MISS:
                return cast(T, hit)
        value = compute()
        with self._lock:
            if self.token == current and len(self.entries) < MAX_ENTRIES:
                self.entries[key] = value
        return value

    def _loader(self, on_loop: bool = False) -> Engine:
        """The snapshot's own engine (one connection, used under the lock); for a read on the event
        loop one whose statements give up on a lock or a slow statement, as the loop's do."""
        if on_loop:
            if self._loop_engine is None:
                self._loop_engine = make_engine(self.url, pool_size=1, max_overflow=0)
                event.listen(self._loop_engine, "connect", loop_timeouts)
            return self._loop_engine
        if self._engine is None:
            self._engine = make_engine(self.url, pool_size=1, max_overflow=0)
        return self._engine

    def close(self) -> None:
        with self._lock:
            for engine in (self._engine, self._loop_engine):
                if engine is not None:
                    engine.dispose()
            self._engine = self._loop_engine = None
            self.entries, self.token = {}, None


_snapshots: weakref.WeakKeyDictionary[Database, Snapshot] = weakref.WeakKeyDictionary()
_snapshots_lock = threading.Lock()


def snapshot_of(session: Session) -> Snapshot | None:
    """The cache of the database the session belongs to (None for a session made elsewhere)."""
    db = session.info.get(Database.INFO_KEY)
    if db is None:
        return None
    snap = _snapshots.get(db)
    if snap is None:
        with _snapshots_lock:
            snap = _snapshots.get(db)
            if snap is None:
                snap = _snapshots[db] = Snapshot(db.url)
                weakref.finalize(db, snap.close)
    return snap


def _cached(session: Session, key: tuple[Any, ...], load: Callable[[Session], T],
            keep: Callable[[T], bool] = lambda _: True) -> T:
    snap = snapshot_of(session)
    return load(session) if snap is None else snap.get(session, key, load, keep)


def derived(session: Session, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
    """`Snapshot.derived` for the session's database (computed afresh for a session made elsewhere)."""
    snap = snapshot_of(session)
    return compute() if snap is None else snap.derived(session, key, compute)


def credentials(session: Session, prefix: str) -> Sequence[Credential]:
    """The credentials with this key prefix, each with its system and the system's organization."""
    def load(s: Session) -> Sequence[Credential]:
        found = repo.credentials_by_prefix(s, prefix)
        for cred in found:
            _ = cred.system.org.code
        return found

    return _cached(session, ("credentials", prefix), load, keep=bool)  # unknown prefixes are not kept


def service(session: Session, code: str) -> Service | None:
    """The service with its resource (the version it was published over)."""
    def load(s: Session) -> Service | None:
        found = repo.service_by_code(s, code)
        if found is not None:
            _ = found.resource.code, found.provider.code
        return found

    return _cached(session, ("service", code), load, keep=lambda found: found is not None)


def grant(session: Session, system_id: int, service_id: int) -> Grant | None:
    """The system's newest grant for the service."""
    return _cached(session, ("grant", system_id, service_id),
                   lambda s: repo.latest_grant(s, system_id, service_id))


def _loaded(res: Resource | None) -> Resource | None:
    if res is not None:
        _ = [f.name for f in res.fields], res.provider.code, res.category.code
    return res


def current_resource(session: Session, code: str) -> Resource | None:
    """The newest published version of the resource with this code (None if none is)."""
    def load(s: Session) -> Resource | None:
        res = catalog_repo.resource_by_code(s, code)
        return _loaded(res if res is not None and res.status == "published" else None)

    return _cached(session, ("current_resource", code), load)


def resource(session: Session, resource_id: int) -> Resource | None:
    """The resource version with this id and its fields."""
    return _cached(session, ("resource", resource_id), lambda s: _loaded(s.get(Resource, resource_id)))
