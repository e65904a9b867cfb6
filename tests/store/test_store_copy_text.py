"""Bulk inserts give back exactly what went in, whatever the values: on PostgreSQL the rows go as
COPY text built a column at a time (store/copy_text.py), so escaping, NULL, every type and the
fallback for types it does not know are checked against the database itself — on SQLite too."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import BigInteger, Boolean, Column, Date, Double, Integer, MetaData, Table, Text, select

from onceonly.db import Database
from onceonly.store import copy_text
from onceonly.store.service import bulk_insert_columns
from onceonly.store.tables import UTCDateTime

NASTY = ["plain", "", "\\N", "tab\there", "line\nbreak", "cr\rlf\r\n", "back\\slash\\", "\\", "引号\"和'", "𠀀明",
         " lead and trail ", "\\t literally", "a\\\nb"]


@pytest.fixture
def table(db: Database) -> Iterator[Table]:
    t = Table(f"copy_probe_{uuid.uuid4().hex[:8]}", MetaData(), Column("n", Integer, primary_key=True),
              Column("s", Text), Column("i", BigInteger), Column("f", Double), Column("b", Boolean),
              Column("d", Date), Column("ts", UTCDateTime()))
    t.create(db.engine)
    yield t
    t.drop(db.engine)


def _insert(db: Database, table: Table, rows: list[tuple[Any, ...]], **kw: Any) -> list[tuple[Any, ...]]:
    names = [c.name for c in table.columns]
    with db.session(write=True) as s:
        bulk_insert_columns(s.connection(), table, names, [list(col) for col in zip(*rows, strict=True)], **kw)
    with db.session() as s:
        return [tuple(r) for r in s.connection().execute(select(table).order_by(table.c.n))]


def _same(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        for a, b in zip(g, w, strict=True):
            if isinstance(b, float) and math.isnan(b):
                assert isinstance(a, float) and math.isnan(a)
            else:
                assert a == b, (g, w)


def test_every_type_and_hostile_text_round_trips(db: Database, table: Table) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    floats = [1.5, -0.0, 1e300, float("inf"), float("-inf"), 0.1 + 0.2, None]
    if not db.is_sqlite:  # SQLite itself stores NaN as NULL
        floats.append(float("nan"))
    rows = [(i, NASTY[i % len(NASTY)] if i % 7 else None, (-1) ** i * (2**62 + i) if i % 5 else None,
             floats[i % len(floats)], [True, False, None][i % 3], [date(2018, 8, 20), date(5, 1, 2), None][i % 3],
             [when + timedelta(seconds=i), None][i % 2]) for i in range(60)]
    _same(_insert(db, table, rows), rows)


def test_aware_datetimes_of_any_offset_are_the_same_instant(db: Database, table: Table) -> None:
    beijing = timezone(timedelta(hours=8))
    rows = [(1, "x", 1, 1.0, True, date(2026, 1, 1), datetime(2026, 5, 6, 7, 8, 9, tzinfo=beijing))]
    got = _insert(db, table, rows)
    assert got[0][6] == datetime(2026, 5, 5, 23, 8, 9, tzinfo=UTC)


def test_constant_columns_are_converted_once(db: Database, table: Table) -> None:
    now = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    rows = [(i, "同一", 7, 2.5, False, date(2020, 2, 29), now) for i in range(5)]
    _same(_insert(db, table, rows, converted=True, constants=3), rows)


def test_column_text_knows_its_types_and_refuses_others() -> None:
    assert copy_text.column_text(["a", None]) == ["a", None]
    assert copy_text.column_text([1, None, -2]) == ["1", None, "-2"]
    assert copy_text.column_text([True, False, None]) == ["t", "f", None]
    assert copy_text.column_text([date(2018, 8, 20)]) == ["2018-08-20"]
    assert copy_text.column_text(range(3)) == ["0", "1", "2"]
    assert copy_text.column_text([1, "mixed"]) is None  # two types: the caller uses write_row
    assert copy_text.column_text([b"bytes"]) is None
    assert copy_text.column_text([{"json": 1}], constant=True) is None
    assert copy_text.block([["a\tb", None, "\\N"], ["1", "2", None]]) == "a\\tb\t1\n\\N\t2\n\\\\N\t\\N\n"
