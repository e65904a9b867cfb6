"""A statement run on the driver (store/driver_statement.py) does exactly what SQLAlchemy does
with the same statement — a select of every type, keys of every type (an instant with no
microseconds included), constants bound at build time, hostile text; an INSERT of many rows, an
UPDATE and an upsert with RETURNING store what SQLAlchemy would — on both databases; and its
errors, and those of SQLite's BEGIN sent to the driver, are SQLAlchemy's."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Double,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    bindparam,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from onceonly.db import SQLITE_BEGIN, Database, make_engine
from onceonly.store.driver_statement import DriverStatement, driver_fetchone
from onceonly.store.tables import UTCDateTime

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # no microseconds: stored as …05.000000 by SQLAlchemy
ROWS: list[dict[str, Any]] = [
    {"n": 1, "s": "张三明", "i": 2**62, "f": 0.1 + 0.2, "b": True, "d": date(2018, 8, 20), "ts": WHEN,
     "m": Decimal("12.50"), "region": "341802"},
    {"n": 2, "s": "'; DROP TABLE x; --", "i": -7, "f": -0.0, "b": False, "d": date(5, 1, 2),
     "ts": datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC), "m": Decimal("-0.01"), "region": "341881"},
    {"n": 3, "s": None, "i": None, "f": None, "b": None, "d": None, "ts": None, "m": None, "region": "341802"},
]


@pytest.fixture
def table(db: Database) -> Iterator[Table]:
    t = Table(f"driver_probe_{uuid.uuid4().hex[:8]}", MetaData(), Column("n", Integer, primary_key=True),
              Column("s", Text), Column("i", BigInteger), Column("f", Double), Column("b", Boolean),
              Column("d", Date), Column("ts", UTCDateTime()), Column("m", Numeric(12, 2)), Column("region", Text))
    t.create(db.engine)
    with db.session(write=True) as s:
        s.execute(insert(t), ROWS)
    yield t
    t.drop(db.engine)


def _both(db: Database, stmt: Any, values: dict[str, Any]) -> tuple[Any, Any]:
    with db.session() as s:
        conn = s.connection()
        want = conn.execute(stmt, values).mappings().first()
        got = DriverStatement.build(stmt, conn.dialect, list(values)).first(conn, values)
    return got, (dict(want) if want is not None else None)


@pytest.mark.parametrize("column", ["n", "s", "i", "d", "ts", "m", "b"])
def test_a_row_by_a_key_of_every_type_is_what_sqlalchemy_answers(db: Database, table: Table, column: str) -> None:
    stmt = select(table).where(table.c[column] == bindparam("k", type_=table.c[column].type))
    for row in ROWS[:2]:
        got, want = _both(db, stmt, {"k": row[column]})
        assert want is not None and got == want
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in want.items()}
        assert got["ts"] == row["ts"] and got["d"] == row["d"]


def test_constants_and_in_lists_are_bound_at_build_and_nulls_come_back_as_none(db: Database, table: Table) -> None:
    stmt = select(table.c.n, table.c.s, table.c.ts).where(table.c.n == bindparam("k"),
                                                           table.c.region.in_(["341802", "341803"]))
    assert _both(db, stmt, {"k": 3}) == ({"n": 3, "s": None, "ts": None},) * 2
    assert _both(db, stmt, {"k": 2}) == (None, None)  # outside the list: nothing, from both


def test_a_hostile_key_is_a_value_not_sql(db: Database, table: Table) -> None:
    stmt = select(table.c.n).where(table.c.s == bindparam("k"))
    assert _both(db, stmt, {"k": "'; DROP TABLE x; --"}) == ({"n": 2}, {"n": 2})
    assert _both(db, stmt, {"k": "' OR '1'='1"}) == (None, None)
    with db.session() as s:
        assert s.connection().execute(select(table.c.n)).all()  # the table is still there


def _probe(db: Database) -> Table:
    t = Table(f"driver_dml_{uuid.uuid4().hex[:8]}", MetaData(), Column("n", Integer, primary_key=True),
              Column("s", Text), Column("ts", UTCDateTime()), Column("doc", JSON), Column("m", Numeric(12, 2)),
              Column("hits", BigInteger, nullable=False, server_default="0"))
    t.create(db.engine)
    return t


def test_rows_inserted_updated_and_upserted_on_the_driver_read_back_as_sqlalchemy_writes_them(db: Database) -> None:
    ours, theirs = _probe(db), _probe(db)
    rows = [{"n": 1, "s": "张三明", "ts": WHEN, "doc": {"fields": ["name", "区划"], "n": 2**53 - 1},
             "m": Decimal("1.50")},
            {"n": 2, "s": "'; DROP TABLE x; --", "ts": datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
             "doc": {}, "m": None},
            {"n": 3, "s": None, "ts": None, "doc": None, "m": Decimal("-0.01")}]
    names = ["n", "s", "ts", "doc", "m"]
    try:
        with db.session(write=True) as s:
            conn = s.connection()
            add = DriverStatement.build(insert(ours).values({c: bindparam(f"v_{c}") for c in names}),
                                        conn.dialect, [f"v_{c}" for c in names])
            add.executemany(conn, ({f"v_{c}": row[c] for c in names} for row in rows))
            conn.execute(insert(theirs), rows)
            for table in (ours, theirs):
                change = update(table).where(table.c.n == bindparam("key")).values(s=bindparam("v_s"))
                if table is ours:
                    DriverStatement.build(change, conn.dialect, ["key", "v_s"]).execute(conn, {"key": 2, "v_s": "改"})
                else:
                    conn.execute(change, {"key": 2, "v_s": "改"})
            upsert = (pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert)(ours).values(
                n=bindparam("v_n"), hits=bindparam("v_hits"))
            upsert = upsert.on_conflict_do_update(
                index_elements=["n"], set_={"hits": ours.c.hits + upsert.excluded.hits}
            ).returning(ours.c.n, ours.c.hits, ours.c.ts)
            bump = DriverStatement.build(upsert, conn.dialect, ["v_n", "v_hits"])
            assert bump.first(conn, {"v_n": 1, "v_hits": 5}) == {"n": 1, "hits": 5, "ts": WHEN}
            assert bump.first(conn, {"v_n": 1, "v_hits": 2}) == {"n": 1, "hits": 7, "ts": WHEN}
            conn.execute(update(theirs).where(theirs.c.n == 1).values(hits=7))
        with db.session() as s:
            got = [dict(r) for r in s.execute(select(ours).order_by(ours.c.n)).mappings()]
            want = [dict(r) for r in s.execute(select(theirs).order_by(theirs.c.n)).mappings()]
            stored_null = [s.execute(select(t.c.n).where(t.c.doc.is_(None)).order_by(t.c.n)).scalars().all()
                           for t in (ours, theirs)]  # SQL NULL, not JSON null: stored alike too
        assert got == want
        assert stored_null[0] == stored_null[1]
        assert got[0]["doc"] == rows[0]["doc"] and got[1]["s"] == "改" and got[2]["doc"] is None
    finally:
        ours.drop(db.engine)
        theirs.drop(db.engine)


def test_a_failed_insert_on_the_driver_is_sqlalchemys_integrity_error_and_rolls_back_whole(db: Database) -> None:
    table = _probe(db)
    try:
        with pytest.raises(IntegrityError), db.session(write=True) as s:
            conn = s.connection()
            add = DriverStatement.build(insert(table).values(n=bindparam("v_n")), conn.dialect, ["v_n"])
            add.executemany(conn, [{"v_n": 1}, {"v_n": 2}, {"v_n": 1}])  # the third repeats the first key
        with db.session() as s:
            assert s.execute(select(func.count()).select_from(table)).scalar_one() == 0
    finally:
        table.drop(db.engine)


def test_a_statement_on_a_connection_with_no_transaction_begins_one_that_sqlalchemy_ends(db: Database) -> None:
    """As `Connection.execute` does: what it wrote is rolled back with the connection."""
    table = _probe(db)
    try:
        with db.engine.connect() as conn:
            assert not conn.in_transaction()
            add = DriverStatement.build(insert(table).values(n=bindparam("v_n")), conn.dialect, ["v_n"])
            add.execute(conn, {"v_n": 1})
            assert conn.in_transaction()
            conn.rollback()
            add.execute(conn, {"v_n": 2})
            conn.commit()
        with db.session() as s:
            assert s.execute(select(table.c.n)).scalars().all() == [2]
    finally:
        table.drop(db.engine)


def test_postgresql_keeps_a_cursor_for_later_checkouts_and_drops_it_after_an_error(db: Database) -> None:
    """SQLite closes its cursor after each statement (a statement not stepped to its end would
    keep its read snapshot), so it never keeps one."""
    eng = make_engine(db.url, pool_size=1, max_overflow=0)
    kept_on = not db.is_sqlite
    try:
        with eng.connect() as conn:
            assert driver_fetchone(conn, "SELECT 1")[0] == (1,)
            kept = conn.connection.info.get("onceonly.cursor")
            assert (kept is not None) is kept_on
        with eng.connect() as conn:
            assert driver_fetchone(conn, "SELECT 2")[0] == (2,)
            if kept_on:
                assert kept is not None and conn.connection.info["onceonly.cursor"][1] is kept[1]
            with pytest.raises(DBAPIError):
                driver_fetchone(conn, "SELECT * FROM no_such_table_here")
            assert "onceonly.cursor" not in conn.connection.info
            conn.rollback()
            assert driver_fetchone(conn, "SELECT 3")[0] == (3,)
            if kept_on:
                assert kept is not None and conn.connection.info["onceonly.cursor"][1] is not kept[1]
    finally:
        eng.dispose()


def test_a_parameter_the_statement_lacks_is_refused_at_build(db: Database, table: Table) -> None:
    with db.session() as s, pytest.raises(ValueError, match="no parameter k"):
        DriverStatement.build(select(table.c.n).where(table.c.n == bindparam("key")), s.connection().dialect, ["k"])


def test_driver_errors_are_sqlalchemys_and_a_lost_connection_is_not_reused(db: Database, table: Table) -> None:
    """What the app's error handlers catch (DataError → 422, …) and the pool relies on."""
    with db.session() as s:
        conn = s.connection()
        with pytest.raises(DBAPIError) as info:
            driver_fetchone(conn, "SELECT * FROM no_such_table_at_all")
        assert not info.value.connection_invalidated
    if db.is_sqlite:
        return
    with db.session() as s:
        conn = s.connection()
        (pid,), _ = driver_fetchone(conn, "SELECT pg_backend_pid()")
        with db.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        with pytest.raises(DBAPIError) as info:
            driver_fetchone(conn, "SELECT 1")
        assert info.value.connection_invalidated
        s.rollback()
    with db.session() as s:  # the pool hands out a working connection
        assert driver_fetchone(s.connection(), "SELECT 1")[0] == (1,)


def test_a_begin_refused_by_sqlite_is_sqlalchemys_operational_error(tmp_path: Any) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'locked.db'}")
    event.listen(engine, "connect", lambda dbapi_conn, _r: dbapi_conn.execute("PRAGMA busy_timeout=50"))
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        writer = engine.execution_options(**{SQLITE_BEGIN: "BEGIN IMMEDIATE"})
        with pytest.raises(OperationalError, match="locked"), writer.begin():
            pass
        holder.execute("ROLLBACK")
        with writer.begin() as conn:  # free again: the same engine goes on
            conn.execute(text("CREATE TABLE t (n INTEGER)"))
    finally:
        holder.close()
        engine.dispose()
