"""Group commit: exchange calls are audited durably before they are answered, without one
transaction per call.

`append_call` queues the record and blocks until the transaction holding it has committed,
then returns its seq. One writer thread per process and database takes whatever is queued
(up to `MAX_GROUP` records), chains it in one transaction — one head lock, one executemany, one
head update — commits, and wakes every caller of the group. While it commits, the next group
gathers, so under load each commit carries many calls. Several processes (uvicorn workers)
each run their own writer; the head lock (BEGIN IMMEDIATE on SQLite, SELECT … FOR UPDATE on
PostgreSQL) keeps their groups in one linear chain.

The writer has its own connection. On SQLite it runs with `synchronous=FULL`, so a commit is on
disk (WAL fsynced) before any caller is woken; PostgreSQL commits are durable by default."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.orm import Session

from onceonly.audit.keys import KeyPair, ensure_keypair
from onceonly.audit.service import AuditUnavailable, append_in, entry, holds_head
from onceonly.audit.service import append as chain_append
from onceonly.db import SQLITE_BEGIN, Database, make_engine, utcnow

log = logging.getLogger("onceonly.audit")
MAX_GROUP = 1000
WAIT_SECONDS = 30.0


@dataclass(eq=False)
class _Pending:
    content: Mapping[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    seq: int = 0
    error: BaseException | None = None


_STOP = object()


class AuditWriter:
    """The group-commit writer of one database in this process (see the module docstring)."""

    def __init__(self, url: str, home: Path, *, checkpoint_every: int = 1000,
                 clock: Callable[[], datetime] = utcnow, max_group: int = MAX_GROUP) -> None:
        self.url = url
        self.home = home
        self.checkpoint_every = checkpoint_every
        self.clock = clock
        self.max_group = max_group
        self._lock = threading.Lock()
        self._pid = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None
        self._conn: Connection | None = None  # used by the writer thread only
        self._signer: KeyPair | None = None
        self.groups = 0  # commits so far (observability and tests)

    def append(self, content: Mapping[str, Any]) -> int:
        """Queue one record (from `service.entry`) and return its seq once it is committed."""
        self._ensure_running()
        pending = _Pending(content)
        self._queue.put(pending)
        if not pending.done.wait(WAIT_SECONDS):
            raise AuditUnavailable(f"the audit record was not committed within {WAIT_SECONDS:.0f} s")
        if pending.error is not None:
            reason = str(getattr(pending.error, "orig", None) or pending.error).strip().splitlines()
            raise AuditUnavailable(f"the audit record could not be committed: {reason[0] if reason else 'error'}"
                                   ) from pending.error
        return pending.seq

    def close(self) -> None:
        """Let the queued records commit, then stop the thread and close the connection."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None and self._pid == os.getpid():
                self._queue.put(_STOP)
                thread.join(timeout=WAIT_SECONDS)
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def _ensure_running(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            if self._pid != os.getpid():  # a forked child: the parent's thread and connection are not ours
                self._queue = queue.SimpleQueue()
                self._conn = None
                if self._engine is not None:
                    self._engine.dispose(close=False)
                    self._engine = None
            self._pid = os.getpid()
            self._engine = _writer_engine(self.url)
            self._thread = threading.Thread(target=self._run, name="onceonly-audit-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._drop_connection()

    def _loop(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is _STOP:
                return
            group: list[_Pending] = [item]
            while len(group) < self.max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                group.append(item)
            self._commit(group)

    def _commit(self, group: list[_Pending]) -> None:
        try:
            conn = self._connection()
            with conn.begin():
                first, _ = chain_append(conn, [p.content for p in group], clock=self.clock,
                                        signer=self.checkpoint_signer(), checkpoint_every=self.checkpoint_every)
            for i, pending in enumerate(group):
                pending.seq = first + i
            self.groups += 1
        except Exception as exc:  # every caller of the group hears of it; the thread goes on
            log.exception("audit group of %d record(s) failed", len(group))
            self._drop_connection()
            for pending in group:
                pending.error = exc
        finally:
            for pending in group:
                pending.done.set()

    def _connection(self) -> Connection:
        """The thread's own connection, kept between groups (no pool checkout or ping per commit)."""
        if self._conn is None:
            assert self._engine is not None
            self._conn = self._engine.connect()
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None

    def checkpoint_signer(self) -> KeyPair | None:
        """The key that signs checkpoints, loaded once; None while it cannot be loaded."""
        if self._signer is None and self.checkpoint_every:
            try:
                self._signer = ensure_keypair(self.home)
            except Exception:  # an unreadable key must not stop calls; checkpoints resume once it is fixed
                log.exception("audit checkpoint key unavailable; records go on unsigned until it is fixed")
        return self._signer


def _writer_engine(url: str) -> Engine:
    engine = make_engine(url, pool_size=1, max_overflow=0)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _full_sync(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA synchronous=FULL")  # after make_engine's NORMAL: fsync every commit
            cur.close()

        engine = engine.execution_options(**{SQLITE_BEGIN: "BEGIN IMMEDIATE"})
    return engine


_writers: weakref.WeakKeyDictionary[Database, AuditWriter] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def writer_for(db: Database) -> AuditWriter:
    """The process's writer for this database, started on first use, closed with the database
    object (or at exit)."""
    with _writers_lock:
        writer = _writers.get(db)
        if writer is None:
            writer = AuditWriter(db.url, db.settings.home, checkpoint_every=db.settings.audit_checkpoint_every)
            _writers[db] = writer
            weakref.finalize(db, writer.close)
        return writer


def append_call(db: Database, *, system: str, org: str | None, service: str, mode: str, status: int,
                purpose: str | None = None, request_digest: str | None = None, records: int = 0,
                nbytes: int = 0, latency_ms: int = 0, ip: str | None = None,
                detail: Mapping[str, Any] | None = None, session: Session | None = None) -> int:
    """Audit one exchange call and return its seq once the record is committed.

    Blocks (group commit): call it from a sync endpoint or a worker thread, or use
    `append_call_async` in async code. Raises AuditUnavailable (503) if the record cannot be
    committed — then the call must not be answered with data.

    Pass the request's `session` when the request writes in its own transaction (usage
    counters, nonces). On SQLite, where one writer holds the whole database, the record then
    goes into that transaction — the group writer would wait for the lock the request itself
    holds — and commits with it, before the response. So does it on PostgreSQL when that
    transaction has already appended (`record_staff_action`) and so holds the chain head;
    otherwise the session is not used there."""
    content = entry("call", system=system, org=org, service=service, mode=mode, status=status, purpose=purpose,
                    request_digest=request_digest, records=records, nbytes=nbytes, latency_ms=latency_ms, ip=ip,
                    detail=detail)
    writer = writer_for(db)
    if session is not None and (db.is_sqlite or holds_head(session)):
        return append_in(session, [content], signer=writer.checkpoint_signer(),
                         checkpoint_every=writer.checkpoint_every)[0]
    return writer.append(content)


async def append_call_async(db: Database, **fields: Any) -> int:
    """`append_call` for async endpoints: waits in a worker thread, not on the event loop."""
    from anyio import to_thread

    result: int = await to_thread.run_sync(partial(append_call, db, **fields))
    return result
