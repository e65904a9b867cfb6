"""Engine and session plumbing. The caller (request, command, job) owns the transaction."""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import URL, Connection, DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.exc import ArgumentError, InvalidatePoolError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from onceonly.errors import ConfigError
from onceonly.settings import Settings, mask_url

log = logging.getLogger("onceonly.db")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which stores naive) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")  # 64 MiB: large loads keep the key index in memory
    cur.close()


SQLITE_BEGIN = "onceonly_sqlite_begin"
PG_POOL_SIZE = 20  # connections kept open per process (and as many more on demand)


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # Let SQLAlchemy own BEGIN so a whole batch is one transaction (pysqlite quirk).
        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # Straight to the driver: through exec_driver_sql, the BEGIN of every read-only
            # transaction cost a tenth of an exchange record lookup. SQLAlchemy still wraps an
            # error raised here (a lock not granted within busy_timeout) as OperationalError.
            conn.connection.driver_connection.execute(conn.get_execution_options().get(SQLITE_BEGIN, "BEGIN"))

        return engine
    # Requests run in up to 40 worker threads (anyio's default): a pool smaller than that opens
    # and closes an overflow connection per request under load, a millisecond each on PostgreSQL.
    kwargs.setdefault("pool_size", PG_POOL_SIZE)
    kwargs.setdefault("max_overflow", PG_POOL_SIZE)
    engine = create_engine(url, **kwargs)
    event.listen(engine, "connect", _mark_used)
    event.listen(engine, "checkin", _mark_used)

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        _ping_if_idle(engine.dialect, dbapi_conn, record)

    return engine


PING_AFTER_IDLE = 2.0  # seconds a pooled PostgreSQL connection may rest before it is pinged on checkout
_USED = "onceonly.used_at"


def _mark_used(_dbapi_conn: Any, record: Any) -> None:
    record.info[_USED] = time.monotonic()


def _ping_if_idle(dialect: Any, dbapi_conn: Any, record: Any) -> None:
    """`pool_pre_ping`, for a connection that has rested: pinging every checkout was a round
    trip in five of an exchange call. A connection back in the pool within PING_AFTER_IDLE is
    trusted; if the server went away since, its next statement fails as a disconnect and every
    connection of the pool opened before is replaced, so the calls in flight then fail and the
    next ones succeed. A failed ping replaces the pool's connections the same way (as
    `pool_pre_ping` does) before one is handed out."""
    if time.monotonic() - record.info.get(_USED, 0.0) < PING_AFTER_IDLE:
        return
    try:
        alive = dialect.do_ping(dbapi_conn)  # as pool_pre_ping does: leaves no transaction open
    except Exception as exc:  # any failure: the connection is not handed out
        raise InvalidatePoolError(f"a pooled connection failed its ping: {type(exc).__name__}") from exc
    if not alive:
        raise InvalidatePoolError("a pooled connection failed its ping")


def on_this_host(url: URL) -> bool:
    """Whether the database answers from this host: SQLite, or PostgreSQL over a unix socket or
    loopback. Its reads then take tens of microseconds, less than handing a call to a worker
    thread and back; a server across the network is waited for in a worker thread instead, so
    its round trips never hold the event loop. A server named by `hostaddr` or a service file
    counts as remote (its address is not known here); so does a loopback proxy in front of a
    remote server, which this cannot tell — set `exchange_reads_on_loop = "never"` for it."""
    if url.get_backend_name() == "sqlite":
        return True
    if any(url.query.get(name) for name in ("hostaddr", "service")) or os.environ.get("PGHOSTADDR") \
            or os.environ.get("PGSERVICE"):
        return False
    given = url.query.get("host")  # `?host=/run/postgresql` (a socket directory) or `?host=h1:5432&host=h2`
    hosts = [h for value in ((given,) if isinstance(given, str) else given or ()) for h in value.split(",")]
    if url.host:
        hosts.append(url.host)
    if not hosts:  # libpq's default: PGHOST, else its unix socket
        hosts = os.environ.get("PGHOST", "").split(",")
    return all(_local(host) for host in hosts)


def _local(host: str) -> bool:
    host = host.strip()
    if host.startswith("/") or host == "":
        return True
    if host.startswith("["):  # [::1]:5432
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:  # name:5432
        host = host.split(":", 1)[0]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Reads on the event loop (PostgreSQL) run on connections of their own that give up rather
# than hold the loop: a lock taken by a schema change (ALTER TABLE in a staff request, whose
# commit the loop itself has to schedule), or a statement slower than any lookup should be.
LOOP_LOCK_TIMEOUT_MS = 50
LOOP_STATEMENT_TIMEOUT_MS = 500
LOOP_POOL_TIMEOUT = 1.0  # seconds: the loop's own pool is never empty unless several loops share it
LOOP_PAUSE = 5.0  # seconds calls read in worker threads after a read on the loop gave up
_GAVE_UP = ("55P03", "57014")  # lock_not_available, query_canceled (statement_timeout)


LOOP_TIMEOUTS_KEY = "onceonly.loop_timeouts"  # session.info of a PostgreSQL `reading(on_loop=True)`


class LoopWouldWait(RuntimeError):
    """A read on the event loop that would have to wait for another thread (raised instead of
    waiting): the call runs in a worker thread (`Database.loop_gave_up`)."""


def loop_timeouts(dbapi_conn: Any, _record: Any) -> None:
    """`connect` listener of the engines read on the event loop (PostgreSQL): session settings,
    which a connection pooler in transaction mode would not keep — hence `never` for one."""
    cur = dbapi_conn.cursor()
    cur.execute(f"SET lock_timeout = {LOOP_LOCK_TIMEOUT_MS}")
    cur.execute(f"SET statement_timeout = {LOOP_STATEMENT_TIMEOUT_MS}")
    cur.close()
    dbapi_conn.commit()


def check_connection(engine: Engine) -> None:
    """Fail with one line naming the setting when the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ConfigError(
            f"setting ONCEONLY_DATABASE_URL: cannot connect to {mask_url(str(engine.url))}: {reason}"
        ) from None


class Database:
    """One engine and session factory per settings."""

    INFO_KEY = "onceonly.database"  # each session's info names its Database (process-wide caches use it)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.effective_database_url
        try:
            self.engine = make_engine(self.url)
        except (ArgumentError, ValueError, ImportError) as exc:  # malformed URL, unknown driver
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"setting ONCEONLY_DATABASE_URL: {mask_url(self.url)}: {reason}") from None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False, info={self.INFO_KEY: self})
        # SQLite: a unit of work that will write takes the write lock at BEGIN (BEGIN IMMEDIATE).
        # With a plain (deferred) BEGIN, a transaction that reads and then writes fails at once
        # with "database is locked" if another writer committed in between (its WAL snapshot is
        # stale, so busy_timeout cannot help); taken up front, writers wait their turn instead.
        self._writer = self.engine.execution_options(**{SQLITE_BEGIN: "BEGIN IMMEDIATE"})
        self._reader = self.engine if self.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._kept: tuple[int, float, Connection] | None = None  # `reading(on_loop=True)`: (thread, when, conn)
        self._kept_lock = threading.Lock()
        self._loop_engine: Engine | None = None  # PostgreSQL: the loop's own engine (made on first use)
        self._loop_paused_until = 0.0
        self.reads_on_loop = settings.exchange_reads_on_loop == "always" or (
            settings.exchange_reads_on_loop == "auto" and on_this_host(self.engine.url))

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A unit of work: commit on success, roll back on any error.

        Pass write=True when it will change data and may run concurrently with other writers
        (requests, jobs): on SQLite it then waits for the write lock up front instead of failing
        half-way; readers are not blocked (WAL). No effect on PostgreSQL."""
        session = self.sessions(bind=self._writer) if write and self.is_sqlite else self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def loop_reads_now(self) -> bool:
        """Whether an exchange call should read on the event loop now (`reads_on_loop`, unless a
        read there gave up a moment ago: `loop_gave_up`)."""
        return self.reads_on_loop and time.monotonic() >= self._loop_paused_until

    def loop_gave_up(self, exc: BaseException) -> bool:
        """Whether `exc` ended a read on the event loop that would have waited (a lock or statement
        timeout of the loop's connections, or their pool empty). If so the call should run again
        in a worker thread — it only read — and calls read in worker threads for LOOP_PAUSE
        seconds, so a schema change in progress does not cost every call the timeout."""
        if isinstance(exc, LoopWouldWait):  # another thread was loading what the call needs: no pause
            return True
        code = getattr(getattr(exc, "orig", None), "sqlstate", None)
        if code not in _GAVE_UP and not isinstance(exc, PoolTimeout):
            return False
        if time.monotonic() >= self._loop_paused_until:
            log.warning("a read on the event loop would have waited (%s): exchange calls read in worker threads "
                        "for %.0f s", code or "pool empty", LOOP_PAUSE)
        self._loop_paused_until = time.monotonic() + LOOP_PAUSE
        return True

    def _loop_reader(self) -> Engine:
        """SQLite: the reader. PostgreSQL: an engine of the loop's own, in autocommit, whose
        connections give up on a lock or a slow statement (LOOP_LOCK_TIMEOUT_MS, …)."""
        if self.is_sqlite:
            return self._reader
        with self._kept_lock:
            if self._loop_engine is None:
                engine = make_engine(self.url, pool_size=1, max_overflow=8, pool_timeout=LOOP_POOL_TIMEOUT)
                event.listen(engine, "connect", loop_timeouts)
                self._loop_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
            return self._loop_engine

    @contextmanager
    def reading(self, *, on_loop: bool = False) -> Iterator[Session]:
        """A read-only unit of work for the exchange data plane: a session opened on a
        connection already in its transaction. Statements run on `connection_of(session)` never
        start the ORM's own transaction machinery, which costs more than a cached record lookup
        takes; ORM use (a cache miss) joins the same transaction.

        On SQLite the transaction is deferred, so every statement reads one snapshot. On
        PostgreSQL the connection is in autocommit: at READ COMMITTED each statement reads its
        own snapshot inside a transaction too, and BEGIN and COMMIT were two of a record lookup's
        four round trips. Either way nothing is written: an ORM flush or a write through the
        session raises ReadOnlySession, and statements run on the connection must only read.

        `on_loop` (the exchange calls that read on the event loop, `reads_on_loop`): the
        connection comes from the loop's own engine (PostgreSQL: one that gives up on a lock or a
        slow statement, see `loop_gave_up`) and is kept for the next `reading(on_loop=True)` of
        the same thread instead of going back to the pool, which cost a tenth of a cached record
        lookup. One is kept per database; another thread's takes its place, and one that rested
        PING_AFTER_IDLE or longer is pinged before it is used again."""
        conn = self._take_kept() if on_loop else None
        if conn is None:
            conn = (self._loop_reader() if on_loop else self._reader).connect()
        clean = False
        try:
            conn.begin()
            session = self.sessions(bind=conn, join_transaction_mode="rollback_only")
            session.info[CONNECTION_KEY] = conn
            session.info[READ_ONLY_KEY] = True
            if on_loop and not self.is_sqlite:
                session.info[LOOP_TIMEOUTS_KEY] = True  # exchange/snapshot.py: a cache miss gives up too
            try:
                yield session
            finally:
                try:
                    if session.in_transaction() or session.identity_map:  # an unused session holds nothing
                        session.close()
                finally:
                    if conn.in_transaction():
                        conn.rollback()  # read only: nothing to keep
                    clean = not conn.invalidated and not conn.in_transaction()
        finally:
            if on_loop and clean:
                self._keep(conn)
            else:
                conn.close()

    def _take_kept(self) -> Connection | None:
        with self._kept_lock:
            kept, self._kept = self._kept, None
        if kept is None:
            return None
        owner, when, conn = kept
        if owner != threading.get_ident() or conn.closed or conn.invalidated:
            conn.close()
            return None
        if time.monotonic() - when >= PING_AFTER_IDLE and not _alive(conn):  # as the pool's checkout does
            conn.invalidate()
            conn.close()
            return None
        return conn

    def _keep(self, conn: Connection) -> None:
        with self._kept_lock:
            old, self._kept = self._kept, (threading.get_ident(), time.monotonic(), conn)
        if old is not None:
            old[2].close()

    def dispose(self) -> None:
        with self._kept_lock:
            kept, self._kept = self._kept, None
        if kept is not None:
            kept[2].close()
        if self._loop_engine is not None:
            self._loop_engine.dispose()
        self.engine.dispose()


def _alive(conn: Connection) -> bool:
    raw = conn.connection.dbapi_connection
    if raw is None:
        return False
    try:
        return bool(conn.dialect.do_ping(raw))
    except Exception:  # any failure: not handed out again
        return False


CONNECTION_KEY = "onceonly.connection"  # session.info of `Database.reading`: the connection it runs on
READ_ONLY_KEY = "onceonly.read_only"  # session.info of `Database.reading`: writes are refused


class ReadOnlySession(RuntimeError):
    """A write through a `Database.reading` session: a defect of the code, never of the input."""


@event.listens_for(Session, "before_flush")
def _no_flush_when_reading(session: Session, _context: Any, _instances: Any) -> None:
    if session.info.get(READ_ONLY_KEY):
        raise ReadOnlySession("a Database.reading() session does not write (ORM flush)")


@event.listens_for(Session, "do_orm_execute")
def _no_dml_when_reading(state: Any) -> None:
    if (state.is_insert or state.is_update or state.is_delete) and state.session.info.get(READ_ONLY_KEY):
        raise ReadOnlySession("a Database.reading() session does not write (statement through the session)")


def connection_of(session: Session) -> Connection:
    """The connection of the session's transaction: for a `Database.reading` session the one it
    was opened on, without touching the ORM; otherwise `session.connection()`. Statements that
    write through it are not seen by the ORM's hooks: one that changes exchange metadata must
    not be followed by cached lookups in the same transaction (exchange/snapshot.py)."""
    conn = session.info.get(CONNECTION_KEY)
    return conn if conn is not None else session.connection()
