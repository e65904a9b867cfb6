"""PostgreSQL connections are pinged on checkout only after resting (db.PING_AFTER_IDLE): a
rested connection whose server side went away is replaced before anyone gets it; a connection
busy a moment ago is trusted, and if it died since, the one statement fails as a disconnect and
the pool hands out working connections from then on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from onceonly import db as dbmod
from onceonly.db import make_engine


@pytest.fixture
def engine(pg_database: str) -> Iterator[Engine]:
    eng = make_engine(pg_database, pool_size=1, max_overflow=0)
    yield eng
    eng.dispose()


def _pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _kill(engine: Engine, pid: int) -> None:
    other = make_engine(str(engine.url.render_as_string(hide_password=False)), pool_size=1, max_overflow=0)
    try:
        with other.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
    finally:
        other.dispose()


def test_a_rested_connection_that_died_is_replaced_before_it_is_handed_out(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _pid(engine)
    _kill(engine, first)
    monkeypatch.setattr(dbmod, "PING_AFTER_IDLE", 0.0)  # every connection counts as rested
    second = _pid(engine)  # no error: the ping failed and the pool reconnected
    assert second != first


def test_a_pinged_connection_is_handed_out_outside_any_transaction(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """So the exchange's autocommit reads (Database.reading) can take it."""
    import psycopg.pq

    _pid(engine)
    pings: list[object] = []
    real = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda c: pings.append(c) or real(c))
    monkeypatch.setattr(dbmod, "PING_AFTER_IDLE", 0.0)
    with engine.connect() as conn:
        assert len(pings) == 1
        assert conn.connection.driver_connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1


def test_a_connection_busy_a_moment_ago_is_not_pinged_and_a_death_costs_one_statement(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dbmod, "PING_AFTER_IDLE", 3600.0)
    first = _pid(engine)
    _kill(engine, first)
    with pytest.raises(DBAPIError) as info, engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert info.value.connection_invalidated
    assert _pid(engine) != first  # the next checkout has a working connection


def test_a_connection_lost_on_the_driver_replaces_the_whole_pool(pg_database: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A server restart seen by a driver statement (store/driver_statement.py) costs one
    statement, not one per pooled connection: as SQLAlchemy's own execution does."""
    from onceonly.store.driver_statement import driver_fetchone

    monkeypatch.setattr(dbmod, "PING_AFTER_IDLE", 3600.0)
    eng = make_engine(pg_database, pool_size=2, max_overflow=0)
    try:
        a, b = eng.connect(), eng.connect()
        pids = [int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in (a, b)]
        a.close()
        b.close()
        for pid in pids:
            _kill(eng, pid)
        with eng.connect() as conn, pytest.raises(DBAPIError) as info:
            driver_fetchone(conn, "SELECT 1")
        assert info.value.connection_invalidated
        for _ in range(2):  # both pooled connections were replaced, not only the one that failed
            with eng.connect() as conn:
                assert driver_fetchone(conn, "SELECT 1")[0] == (1,)
    finally:
        eng.dispose()
