"""`Database.reading`, the unit of work of every exchange call: read-only, on a connection that
its session's ORM use joins; one snapshot for all its statements on SQLite, autocommit on
PostgreSQL (where each statement reads its own snapshot, as at READ COMMITTED inside a
transaction) — and a write through it is refused, leaving nothing written."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, Text, func, insert, select, update

from core_factories import lock_watchdog
from onceonly.catalog.models import Organization
from onceonly.db import Database, ReadOnlySession, connection_of
from onceonly.kit.identifiers import make_uscc


@pytest.fixture
def table(db: Database) -> Iterator[Table]:
    t = Table(f"reading_probe_{uuid.uuid4().hex[:8]}", MetaData(), Column("n", Integer, primary_key=True),
              Column("s", Text))
    t.create(db.engine)
    with db.session(write=True) as s:
        s.execute(insert(t).values(n=1, s="甲"))
    yield t
    t.drop(db.engine)


def _count(db: Database, table: Table) -> int:
    with db.session() as s:
        return int(s.execute(select(func.count()).select_from(table)).scalar_one())


def _org(name: str) -> Organization:
    return Organization(code=make_uscc("1", "1", "341800", uuid.uuid4().hex[:8].upper()), name=name, region="341800",
                        number=1)


def test_the_connection_and_the_orm_read_together_without_starting_the_orm(db: Database, table: Table) -> None:
    with db.reading() as s:
        conn = connection_of(s)
        assert not s.in_transaction()  # nothing of the ORM's machinery yet
        assert conn.execute(select(table.c.s)).scalar_one() == "甲"
        assert s.execute(select(func.count()).select_from(table)).scalar_one() == 1
        assert s.scalar(select(func.count()).select_from(Organization)) is not None
        assert connection_of(s) is conn


def test_a_commit_elsewhere_between_two_reads_is_seen_on_postgresql_but_not_on_sqlite(
        db: Database, table: Table) -> None:
    with db.reading() as s:
        conn = connection_of(s)
        assert conn.execute(select(table.c.s).where(table.c.n == 1)).scalar_one() == "甲"
        with db.session(write=True) as other:
            other.execute(update(table).where(table.c.n == 1).values(s="乙"))
        seen = conn.execute(select(table.c.s).where(table.c.n == 1)).scalar_one()
    assert seen == ("甲" if db.is_sqlite else "乙")  # SQLite: one snapshot; PostgreSQL: statement by statement


@pytest.mark.parametrize("write", ["orm-add", "orm-insert", "orm-update", "orm-delete"])
def test_a_write_through_the_session_is_refused_and_nothing_is_written(
        db: Database, table: Table, write: str) -> None:
    name = f"只读-{uuid.uuid4().hex[:6]}"
    with pytest.raises(ReadOnlySession), db.reading() as s:
        if write == "orm-add":
            s.add(_org(name))
            s.flush()
        elif write == "orm-insert":
            s.execute(insert(table).values(n=2, s="丙"))
        elif write == "orm-update":
            s.execute(update(table).values(s="改"))
        else:
            s.execute(table.delete())
    assert _count(db, table) == 1
    with db.session() as s:
        assert s.execute(select(table.c.s)).scalar_one() == "甲"
        assert s.scalar(select(Organization).where(Organization.name == name)) is None


def test_an_unflushed_orm_change_is_dropped_at_the_end(db: Database) -> None:
    name = f"末尾丢弃-{uuid.uuid4().hex[:6]}"
    with db.reading() as s:
        s.add(_org(name))  # never flushed: nothing to refuse, nothing written
    with db.session() as s:
        assert s.scalar(select(Organization).where(Organization.name == name)) is None


def test_an_error_inside_leaves_the_connection_clean_for_the_next_call(db: Database, table: Table) -> None:
    with pytest.raises(RuntimeError, match="boom"), db.reading() as s:
        connection_of(s).execute(select(table.c.s)).all()
        raise RuntimeError("boom")
    with db.reading() as s:
        assert connection_of(s).execute(select(table.c.s)).scalar_one() == "甲"


def test_a_plain_session_answers_connection_of_with_its_own_connection(db: Database, table: Table) -> None:
    with db.session(write=True) as s:
        connection_of(s).execute(insert(table).values(n=3, s="丁"))
        assert s.execute(select(table.c.s).where(table.c.n == 3)).scalar_one() == "丁"
    assert _count(db, table) == 2


def test_reads_are_one_transaction_on_sqlite_autocommit_on_postgresql_and_the_pool_gets_the_connection_back_clean(
        db: Database, table: Table) -> None:
    with db.reading() as s:
        raw = connection_of(s).connection.driver_connection
        connection_of(s).execute(select(table.c.s)).all()
        if db.is_sqlite:
            assert raw.in_transaction  # the deferred BEGIN: one snapshot for every statement
        else:
            import psycopg.pq

            assert raw.autocommit is True
            assert raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # no BEGIN was sent
    if db.is_sqlite:
        assert not raw.in_transaction
    else:
        assert raw.autocommit is False  # reset on its way back to the pool, so writers stay atomic


def test_the_audit_chain_is_not_appended_in_a_reading_session(db: Database) -> None:
    from onceonly.audit.service import append, append_in, entry

    record = entry("call", system="probe", status=200)
    with pytest.raises(ReadOnlySession), db.reading() as s:
        append_in(s, [record])
    if not db.is_sqlite:
        with pytest.raises(ReadOnlySession), db.reading() as s:
            append(connection_of(s), [record])


def test_a_kept_connection_serves_the_same_threads_next_call_and_only_one_is_kept(db: Database, table: Table) -> None:
    """`reading(on_loop=True)` (the calls read on the event loop): the thread's next call takes
    the same connection instead of a pool checkout; another thread's kept connection replaces
    it, so however many threads keep, at most one connection stays out of the loop's pool."""
    import threading

    def conn_of_a_call() -> object:
        with db.reading(on_loop=True) as s:
            assert connection_of(s).execute(select(table.c.s)).scalar_one() == "甲"
            return connection_of(s)

    first, second = conn_of_a_call(), conn_of_a_call()
    assert first is second
    with pytest.raises(RuntimeError, match="boom"), db.reading(on_loop=True):
        raise RuntimeError("boom")  # a denial inside: the connection is still clean, still kept
    assert conn_of_a_call() is first

    for _ in range(30):  # more threads than the pool has connections: none waits for one
        worker = threading.Thread(target=conn_of_a_call)
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive()
    pool = db._loop_reader().pool
    assert pool.checkedout() <= 1
    assert conn_of_a_call() is not first  # this thread's was replaced by another thread's
    db.dispose()  # the kept one goes back too
    assert pool.checkedout() == 0


def test_a_kept_connection_that_rested_is_pinged_and_replaced_if_dead(
        db: Database, table: Table, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection kept longer than PING_AFTER_IDLE is pinged before it serves again, as the
    pool's checkout pings a rested one; if the ping fails it is thrown away for a fresh one."""
    import onceonly.db as dbmod

    def conn_of_a_call() -> object:
        with db.reading(on_loop=True) as s:
            assert connection_of(s).execute(select(table.c.s)).scalar_one() == "甲"
            return connection_of(s)

    dialect = db._loop_reader().dialect
    pings: list[bool] = []
    real_ping = dialect.do_ping

    def ping(raw: object) -> bool:
        dead = raw is dead_raw
        pings.append(not dead)
        if dead:
            raise OSError("server closed the connection")
        return bool(real_ping(raw))

    monkeypatch.setattr(dialect, "do_ping", ping)
    dead_raw: object = None
    first = conn_of_a_call()
    assert conn_of_a_call() is first and pings == []  # used a moment ago: trusted
    monkeypatch.setattr(dbmod, "PING_AFTER_IDLE", 0.0)  # from now on every kept connection has rested
    assert conn_of_a_call() is first and pings == [True]  # pinged, alive, used again
    dead_raw = first.connection.dbapi_connection  # type: ignore[attr-defined]
    replaced = conn_of_a_call()
    assert replaced is not first and first.closed  # type: ignore[attr-defined]
    assert replaced.connection.dbapi_connection is not dead_raw  # type: ignore[attr-defined]  # thrown away
    assert False in pings
    db.dispose()


def test_a_kept_connection_reads_as_a_fresh_one_does(db: Database, table: Table) -> None:
    """Kept between calls, the connection still begins each call anew: one snapshot per call on
    SQLite, autocommit (a snapshot per statement) on PostgreSQL — never an old call's snapshot."""
    with db.reading(on_loop=True) as s:
        kept = connection_of(s)
        assert kept.execute(select(table.c.s).where(table.c.n == 1)).scalar_one() == "甲"
    with db.session(write=True) as other:
        other.execute(update(table).where(table.c.n == 1).values(s="乙"))
    try:
        with db.reading(on_loop=True) as s:
            assert connection_of(s) is kept
            assert kept.execute(select(table.c.s).where(table.c.n == 1)).scalar_one() == "乙"
            with db.session(write=True) as other:
                other.execute(update(table).where(table.c.n == 1).values(s="丙"))
            seen = kept.execute(select(table.c.s).where(table.c.n == 1)).scalar_one()
        assert seen == ("乙" if db.is_sqlite else "丙")
    finally:
        with db.session(write=True) as other:
            other.execute(update(table).where(table.c.n == 1).values(s="甲"))
        db.dispose()


def test_reads_on_the_loop_give_up_on_a_lock_instead_of_waiting(db: Database, table: Table) -> None:
    """PostgreSQL: the loop's connections wait LOOP_LOCK_TIMEOUT_MS at most for a lock (a schema
    change in progress), and `loop_gave_up` says so — pausing reads on the loop for a while.
    Other readers wait as before. SQLite readers never wait for a writer (WAL)."""
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    import onceonly.db as dbmod

    locker = db.engine.connect()
    tx = locker.begin()
    watchdog = lock_watchdog(db, locker)
    try:
        locker.execute(text(f"ALTER TABLE {table.name} ADD COLUMN probe TEXT"))  # held: not committed
        started = time.monotonic()
        if db.is_sqlite:
            with db.reading(on_loop=True) as s:
                assert connection_of(s).execute(select(table.c.s)).scalar_one() == "甲"
        else:
            with pytest.raises(DBAPIError) as caught, db.reading(on_loop=True) as s:
                connection_of(s).execute(select(table.c.s)).scalar_one()
            assert time.monotonic() - started < 5  # gave up after its timeout, not after the lock
            assert db.loop_gave_up(caught.value) and not db.loop_reads_now()
    finally:
        watchdog.cancel()
        tx.rollback()
        locker.close()
        db._loop_paused_until = 0.0
    if not db.is_sqlite:
        db.dispose()  # a fresh connection of the loop's engine has the timeouts too
        with db.reading(on_loop=True) as s:
            settings = {name: str(connection_of(s).exec_driver_sql(f"SHOW {name}").scalar_one())
                        for name in ("lock_timeout", "statement_timeout")}
        assert settings == {"lock_timeout": f"{dbmod.LOOP_LOCK_TIMEOUT_MS}ms",
                            "statement_timeout": f"{dbmod.LOOP_STATEMENT_TIMEOUT_MS}ms"}
        with db.reading() as s:  # other reads wait as they always did
            assert str(connection_of(s).exec_driver_sql("SHOW lock_timeout").scalar_one()) == "0"
    assert not db.loop_gave_up(RuntimeError("not a database wait"))
    assert db.loop_reads_now() is db.reads_on_loop
    db.dispose()
