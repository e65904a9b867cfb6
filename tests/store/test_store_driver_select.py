"""A select run on the driver (store/driver_select.py) answers exactly what SQLAlchemy answers
for the same statement — every type, keys of every type (an instant with no microseconds
included), constants bound at build time, hostile text — on both databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
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
    insert,
    select,
)

from onceonly.db import Database
from onceonly.store.driver_select import DriverSelect
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
        got = DriverSelect.build(stmt, conn.dialect, list(values)).first(conn, values)
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


def test_a_parameter_the_statement_lacks_is_refused_at_build(db: Database, table: Table) -> None:
    with db.session() as s, pytest.raises(ValueError, match="no parameter k"):
        DriverSelect.build(select(table.c.n).where(table.c.n == bindparam("key")), s.connection().dialect, ["k"])
