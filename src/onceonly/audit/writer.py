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

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, event, make_url
from sqlalchemy.orm import Session

from onceonly.audit.keys import KeyPair, ensure_keypair
from onceonly.audit.service import AuditUnavailable, append_in, entry
from onceonly.audit.service import append as chain_append
from onceonly.db import SQLITE_BEGIN, Database, make_engine, utcnow

log = logging.getLogger("onceonly.audit")
MAX_GROUP = 1000
WAIT_SECONDS = 30.0


class Step(Protocol):
    """Work of a call that must commit in the transaction holding its record (the exchange
    counts the call there: exchange/calls.py). The writer gathers the group's steps by class
    and settles each class's steps at once, before chaining the records."""

    @classmethod
    def settle(cls, conn: Connection, steps: Sequence[Any]) -> Sequence[Mapping[str, Any] | None]:
        """Do the steps' work; per step, None or other content to record instead (a denial)."""
        ...


@dataclass(eq=False)
class _Pending:
    content: Mapping[str, Any]
    step: Step | None = None
    waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None  # an async caller's
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
        database = make_url(url).database if url.startswith("sqlite") else None
        self._lock_path = f"{database}-audit.lock" if database and database != ":memory:" else None
        self._lock_fd: int | None = None
        self.groups = 0  # commits so far (observability and tests)

    def append(self, content: Mapping[str, Any], *, step: Step | None = None) -> int:
        """Queue one record (from `service.entry`) and return its seq once it is committed,
        with its `step` settled in the same transaction."""
        self._ensure_running()
        pending = _Pending(content, step)
        self._queue.put(pending)
        if not pending.done.wait(WAIT_SECONDS):
            raise AuditUnavailable(f"the audit record was not committed within {WAIT_SECONDS:.0f} s")
        return self._outcome(pending)

    async def append_async(self, content: Mapping[str, Any], *, step: Step | None = None) -> int:
        """`append` for the event loop: waits on a future, holding no thread."""
        self._ensure_running()
        loop = asyncio.get_running_loop()
        pending = _Pending(content, step, (loop, loop.create_future()))
        self._queue.put(pending)
        assert pending.waiter is not None
        future = pending.waiter[1]
        timer = loop.call_later(WAIT_SECONDS, _expire, future)  # cheaper than asyncio.wait_for's task
        try:
            await future
        except TimeoutError:
            raise AuditUnavailable(f"the audit record was not committed within {WAIT_SECONDS:.0f} s") from None
        finally:
            timer.cancel()
        return self._outcome(pending)

    @staticmethod
    def _outcome(pending: _Pending) -> int:
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
            if self._lock_fd is not None and self._pid == os.getpid():
                os.close(self._lock_fd)
                self._lock_fd = None

    def _ensure_running(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            if self._pid != os.getpid():  # a forked child: the parent's thread and connection are not ours
                self._queue = queue.SimpleQueue()
                self._conn = None
                self._lock_fd = None  # an inherited descriptor would share the parent's lock
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
            with self._file_lock(), conn.begin():
                self._settle(conn, group)
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
                if pending.waiter is not None:
                    loop, future = pending.waiter
                    with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                        loop.call_soon_threadsafe(_wake, future)

    @staticmethod
    def _settle(conn: Connection, group: list[_Pending]) -> None:
        kinds: dict[type[Step], list[_Pending]] = {}
        for pending in group:
            if pending.step is not None:
                kinds.setdefault(type(pending.step), []).append(pending)
        for kind, pendings in kinds.items():
            replaced = kind.settle(conn, [p.step for p in pendings])
            for pending, content in zip(pendings, replaced, strict=True):
                if content is not None:
                    pending.content = content

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """SQLite: the writers of all processes take turns on a lock file before BEGIN IMMEDIATE.
        A blocked flock wakes as soon as the lock is free, where SQLite's busy handler would
        sleep and poll; other writers (staff, ingest) still wait by busy timeout."""
        if self._lock_path is None:
            yield
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

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


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


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
    writer = _writers.get(db)  # once started, found without the lock
    if writer is not None:
        return writer
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
                detail: Mapping[str, Any] | None = None, session: Session | None = None,
                step: Step | None = None) -> int:
    """Audit one exchange call and return its seq once the record is committed.

    Blocks (group commit): call it from a sync endpoint or a worker thread, or use
    `append_call_async` in async code. Raises AuditUnavailable (503) if the record cannot be
    committed — then the call must not be answered with data.

    Pass the request's `session` when the request writes in its own transaction (usage
    counters, nonces): the record then goes into that transaction and commits with it, before
    the response. On SQLite the group writer would wait for the lock the request itself holds;
    on PostgreSQL it could wait for a counter row the request holds. Calls that only read
    leave the session out and let the writer count them (`step`, see `Step`)."""
    content = entry("call", system=system, org=org, service=service, mode=mode, status=status, purpose=purpose,
                    request_digest=request_digest, records=records, nbytes=nbytes, latency_ms=latency_ms, ip=ip,
                    detail=detail)
    writer = writer_for(db)
    if session is not None:
        return append_in(session, [content], signer=writer.checkpoint_signer(),
                         checkpoint_every=writer.checkpoint_every)[0]
    return writer.append(content, step=step)


def append_delivery(db: Database, *, call_seq: int, status: int, **fields: Any) -> int:
    """Audit the end of a streamed answer (an export) whose call is on record as `call_seq`: the
    rows and bytes actually sent and the whole time taken, which the call's record, committed
    before the first byte, could not know. `status`: 200 the stream reached its end, 499 the
    client went away, 500 the server could not go on. Blocking, like `append_call`."""
    detail = {**dict(fields.pop("detail", None) or {}), "call": call_seq, "complete": status == 200}
    content = entry("delivery", **{**fields, "status": status, "detail": detail})
    return writer_for(db).append(content)


async def append_call_async(db: Database, *, step: Step | None = None, **fields: Any) -> int:
    """`append_call` for async code (never with a session): waits for the group commit on the
    event loop, holding no worker thread."""
    return await writer_for(db).append_async(entry("call", **fields), step=step)
