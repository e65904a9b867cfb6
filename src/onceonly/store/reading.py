"""Reading resource tables for the exchange data plane: filtered keyset pages, lookups by key,
the change log joined with the current rows, and streaming exports. Every SQL statement over a
resource table that the exchange needs is built here, with values always bound as parameters.

Rows come back with typed values (`page`, `get_row`, `rows_by_keys`, `changes_with_rows`) or,
for exports, as tuples in their *wire form* computed by the database: booleans as
`true`/`false`, dates as `YYYY-MM-DD`, instants as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC), other
values as stored — the form `wire_value` gives a typed value, so every mode answers alike.

A grant's row filter (`field -> allowed values`, all must hold) is applied to every read; a
deleted row (`_deleted`) is never returned as a row."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, bindparam, false, func, literal_column, or_, select, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from onceonly.catalog.models import Resource
from onceonly.db import connection_of
from onceonly.store.driver_statement import DriverStatement
from onceonly.store.models import ChangeLog
from onceonly.store.service import _keys_match
from onceonly.store.tables import table_for

RowFilter = Mapping[str, Sequence[Any]]
Key = tuple[Any, ...]
OPERATORS = ("eq", "in", "gt", "ge", "lt", "le")
EXPORT_CHUNK = 2_000  # rows per fetch of an export: enough to amortize a fetch, few enough to bound memory
LOOKUP_CHUNK = 2_000  # keys per IN lookup


@dataclass(frozen=True)
class Condition:
    """One filter on an indexed field: `op` is one of OPERATORS; `values` are typed (one value,
    several for `in`)."""

    field: str
    op: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class SortKey:
    field: str
    descending: bool = False


@dataclass(frozen=True)
class ChangedRow:
    """A change-log entry with the row as it is now: `row` is None for a deletion, and for an
    insert or update whose row has been deleted since (a later D entry follows)."""

    seq: int
    op: str
    key: Key
    row: dict[str, Any] | None


# -- values ------------------------------------------------------------------------------------

def wire_value(value: Any) -> Any:
    """A typed value as the data plane shows it (JSON-ready): dates ISO, instants UTC with
    microseconds and Z, non-finite numbers as null."""
    if value is None or value.__class__ in (str, int, bool):
        return value
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def parse_key(res: Resource, text: str) -> Key:
    """The typed key of a change-log key text (`store.upsert.key_text`: the bare value for a
    one-field key, a JSON array of texts for a composite one). ValueError if it does not fit."""
    types = _field_types(res)
    keys = list(res.key_fields)
    if len(keys) == 1:
        return (_from_text(types[keys[0]], text),)
    parts = json.loads(text)
    if not isinstance(parts, list) or len(parts) != len(keys) or not all(isinstance(p, str) for p in parts):
        raise ValueError(f"a key of this resource is a JSON array of {len(keys)} texts")
    return tuple(_from_text(types[k], p) for k, p in zip(keys, parts, strict=True))


def _from_text(kind: str, text: str) -> Any:
    match kind:
        case "string":
            return text
        case "integer":
            value = int(text)
            if not -(2**63) <= value < 2**63:
                raise ValueError("integer out of range")
            return value
        case "number":
            number = float(text)
            if not math.isfinite(number):
                raise ValueError("not a finite number")
            return number
        case "boolean":
            if text.lower() in ("true", "false"):
                return text.lower() == "true"
            raise ValueError("not a boolean")
        case "date":
            return date.fromisoformat(text)
        case "datetime":
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    raise ValueError(f"unknown field type {kind}")


def _field_types(res: Resource) -> dict[str, str]:
    return {f.name: f.type for f in res.fields}


# -- conditions --------------------------------------------------------------------------------

def _row_filter(table: Table, row_filter: RowFilter) -> list[ColumnElement[bool]]:
    return [table.c[name] == values[0] if len(values) == 1 else table.c[name].in_(list(values))
            for name, values in row_filter.items()]


def _condition(table: Table, cond: Condition) -> ColumnElement[bool]:
    col = table.c[cond.field]
    match cond.op:
        case "eq":
            return col.is_(None) if cond.values[0] is None else col == cond.values[0]
        case "in":
            return col.in_(list(cond.values))
        case "gt":
            return col > cond.values[0]
        case "ge":
            return col >= cond.values[0]
        case "lt":
            return col < cond.values[0]
        case "le":
            return col <= cond.values[0]
    raise ValueError(f"unknown operator {cond.op}")


def _after(terms: Sequence[tuple[Any, bool]], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows strictly after `values` in the order of `terms` ((column, descending); NULLs last in
    either direction, the key last and never NULL) — a keyset condition, bound parameters only."""
    if all(not desc and not col.nullable for col, desc in terms):
        return tuple_(*[col for col, _ in terms]) > tuple_(*values)  # one row-value comparison, index-friendly
    cond: ColumnElement[bool] | None = None
    for (col, desc), value in reversed(list(zip(terms, values, strict=True))):
        if value is None:  # in the NULL group, which sorts last: only later NULL rows follow
            here = and_(col.is_(None), cond) if cond is not None else false()
        else:
            parts: list[ColumnElement[bool]] = [col < value if desc else col > value]
            if col.nullable:
                parts.append(col.is_(None))
            if cond is not None:
                parts.append(and_(col == value, cond))
            here = or_(*parts)
        cond = here
    assert cond is not None
    return cond


# -- pages and lookups -------------------------------------------------------------------------

def page(session: Session, res: Resource, *, fields: Sequence[str], conditions: Sequence[Condition] = (),
         row_filter: RowFilter | None = None, sort: Sequence[SortKey] = (), after: Sequence[Any] | None = None,
         limit: int = 100) -> list[dict[str, Any]]:
    """Live rows matching every condition and the row filter, ordered by `sort` then the key,
    strictly after `after` (the sort values then the key values of the previous page's last row),
    at most `limit`. Each row has `fields` plus the sort and key fields (typed)."""
    table = table_for(res)
    terms = [(table.c[s.field], s.descending) for s in sort] + [(table.c[k], False) for k in res.key_fields]
    names = list(dict.fromkeys([*fields, *(s.field for s in sort), *res.key_fields]))
    stmt = select(*[table.c[n] for n in names]).where(
        table.c._deleted.is_(False), *_row_filter(table, row_filter or {}),
        *[_condition(table, c) for c in conditions])
    if after is not None:
        stmt = stmt.where(_after(terms, after))
    order = [(col.desc() if desc else col.asc()).nulls_last() if col.nullable else (col.desc() if desc else col.asc())
             for col, desc in terms]
    stmt = stmt.order_by(*order).limit(limit)
    return [dict(r) for r in session.connection().execute(stmt).mappings()]


def rows_by_keys(session: Session, res: Resource, keys: Sequence[Key], fields: Sequence[str],
                 row_filter: RowFilter | None = None, *, include_deleted: bool = False) -> dict[Key, dict[str, Any]]:
    """The rows with these keys that pass the row filter (live ones only unless
    `include_deleted`, then with `_deleted`), by key. A chunk of keys per statement."""
    table = table_for(res)
    key_cols = [table.c[k] for k in res.key_fields]
    names = list(dict.fromkeys([*res.key_fields, *fields]))
    cols = [table.c[n] for n in names] + ([table.c._deleted] if include_deleted else [])
    conn = session.connection()
    found: dict[Key, dict[str, Any]] = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), LOOKUP_CHUNK):
        chunk = unique[start:start + LOOKUP_CHUNK]
        stmt = select(*cols).where(_keys_match(conn, key_cols, chunk), *_row_filter(table, row_filter or {}))
        if not include_deleted:
            stmt = stmt.where(table.c._deleted.is_(False))
        for row in conn.execute(stmt).mappings():
            found[tuple(row[k] for k in res.key_fields)] = dict(row)
    return found


_GET_ROW: dict[tuple[Any, ...], DriverStatement] = {}
_GET_ROW_MAX = 1_000


def get_row(session: Session, res: Resource, key: Key, fields: Sequence[str],
            row_filter: RowFilter | None = None) -> dict[str, Any] | None:
    """One live row by its key, if it passes the row filter. The statement (key values bound
    by parameter) is compiled once per dialect, table, fields and filter and run on the driver
    (driver_statement.py): a record lookup is the commonest call of the exchange, and building,
    cache-keying and executing a select through SQLAlchemy cost several times running it."""
    conn = connection_of(session)
    table = table_for(res)
    filters = tuple(sorted((name, tuple(values)) for name, values in (row_filter or {}).items()))
    sig = (conn.dialect.name, table, tuple(fields), tuple(res.key_fields), filters)
    select_ = _GET_ROW.get(sig)
    if select_ is None:
        names = list(dict.fromkeys([*res.key_fields, *fields]))
        stmt = select(*[table.c[n] for n in names]).where(
            *[table.c[k] == bindparam(f"k{i}", type_=table.c[k].type) for i, k in enumerate(res.key_fields)],
            *_row_filter(table, dict(filters)), table.c._deleted.is_(False))
        select_ = DriverStatement.build(stmt, conn.dialect, [f"k{i}" for i in range(len(res.key_fields))])
        if len(_GET_ROW) >= _GET_ROW_MAX:
            _GET_ROW.clear()
        _GET_ROW[sig] = select_
    return select_.first(conn, {f"k{i}": v for i, v in enumerate(key)})


def log_head(session: Session, res: Resource) -> int:
    """The last change-log sequence visible to this transaction (0 for an empty log)."""
    return int(session.execute(select(func.coalesce(func.max(ChangeLog.seq), 0))
                               .where(ChangeLog.resource_id == res.id)).scalar_one())


def changes_with_rows(session: Session, res: Resource, since: int, limit: int, fields: Sequence[str],
                      row_filter: RowFilter | None = None) -> tuple[list[ChangedRow], int]:
    """The change log after `since` (at most `limit` entries examined), each with the current
    row; entries whose row is outside the row filter (by its current values, deleted rows
    included) are left out. Returns the entries and the last sequence examined."""
    log = session.execute(
        select(ChangeLog.seq, ChangeLog.op, ChangeLog.row_key)
        .where(ChangeLog.resource_id == res.id, ChangeLog.seq > since).order_by(ChangeLog.seq).limit(limit)).all()
    if not log:
        return [], since
    keyed = [(int(seq), op, parse_key(res, row_key)) for seq, op, row_key in log]
    rows = rows_by_keys(session, res, [k for _, _, k in keyed], fields, row_filter, include_deleted=True)
    out = []
    for seq, op, key in keyed:
        row = rows.get(key)
        if row is None:
            continue
        live = op != "D" and not row["_deleted"]
        out.append(ChangedRow(seq, op, key, {f: row[f] for f in fields} if live else None))
    return out, keyed[-1][0]


# -- exports -----------------------------------------------------------------------------------

def _wire_sql(conn: Connection, kind: str, name: str) -> str:
    """A column's wire form computed by the database (see the module docstring)."""
    col = conn.dialect.identifier_preparer.quote(name)
    pg = conn.dialect.name == "postgresql"
    match kind:
        case "boolean":
            return (f"CASE WHEN {col} THEN 'true' WHEN NOT {col} THEN 'false' END" if pg
                    else f"CASE {col} WHEN 1 THEN 'true' WHEN 0 THEN 'false' END")
        case "date":
            return f"to_char({col}, 'YYYY-MM-DD')" if pg else col
        case "datetime":
            return (f"""to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')""" if pg
                    else f"replace({col}, ' ', 'T') || 'Z'")
    return col


def _marks(conn: Connection, count: int) -> str:
    return ", ".join(["%s" if conn.dialect.name == "postgresql" else "?"] * count)


def _filter_sql(conn: Connection, row_filter: RowFilter) -> tuple[list[str], list[Any]]:
    q = conn.dialect.identifier_preparer.quote
    parts: list[str] = []
    params: list[Any] = []
    for name, values in row_filter.items():
        parts.append(f"{q(name)} IN ({_marks(conn, len(values))})")
        params.extend(values)
    return parts, params


def _driver_cursor(conn: Connection, name: str) -> Any:
    """The driver's own cursor: server-side on PostgreSQL (rows arrive a chunk at a time), plain
    on SQLite (which steps through the table as rows are fetched)."""
    raw = conn.connection.driver_connection
    assert raw is not None
    return raw.cursor(name=name) if conn.dialect.name == "postgresql" else raw.cursor()


def count_live(session: Session, res: Resource, row_filter: RowFilter | None = None) -> int:
    """Live rows that pass the row filter (what a full export returns)."""
    table = table_for(res)
    return int(session.connection().execute(
        select(func.count()).select_from(table).where(table.c._deleted.is_(False),
                                                      *_row_filter(table, row_filter or {}))).scalar_one())


def stream_live(session: Session, res: Resource, fields: Sequence[str], row_filter: RowFilter | None = None,
                chunk: int = EXPORT_CHUNK) -> Iterator[list[tuple[Any, ...]]]:
    """Every live row that passes the row filter, as wire-form tuples of `fields`, a chunk at a
    time from a driver cursor (in storage order, never the whole table in memory)."""
    conn = session.connection()
    table = table_for(res)
    types = _field_types(res)
    q = conn.dialect.identifier_preparer.quote
    where, params = _filter_sql(conn, row_filter or {})
    live = "NOT _deleted" if conn.dialect.name == "postgresql" else "_deleted = 0"
    sql = (f"SELECT {', '.join(_wire_sql(conn, types[f], f) for f in fields)} FROM {q(table.name)} "
           f"WHERE {' AND '.join([live, *where])}")
    cur = _driver_cursor(conn, "export_live")
    try:
        cur.execute(sql, params)
        yield from _fetch(cur, chunk)
    finally:
        cur.close()


def _fetch(cur: Any, chunk: int) -> Iterator[list[tuple[Any, ...]]]:
    """Chunks from a cursor, each let go before the next is fetched (two alive would double
    the memory an export needs)."""
    while True:
        rows = cur.fetchmany(chunk)
        if not rows:
            return
        yield rows
        del rows


def _last_changes_sql(conn: Connection) -> str:
    """(seq, op, row_key) of each key's last change in (since, upto], in sequence order."""
    m = _marks(conn, 1)
    return ("SELECT c.seq, c.op, c.row_key FROM change_log c JOIN "
            f"(SELECT MAX(seq) AS s FROM change_log WHERE resource_id = {m} AND seq > {m} AND seq <= {m} "
            f"GROUP BY row_key) last ON c.resource_id = {m} AND c.seq = last.s ORDER BY c.seq")


def _last_changes(session: Session, res: Resource, since: int, upto: int,
                  chunk: int) -> Iterator[list[tuple[int, str, str]]]:
    conn = session.connection()
    cur = _driver_cursor(conn, "export_changes")
    try:
        cur.execute(_last_changes_sql(conn), [res.id, since, upto, res.id])
        yield from _fetch(cur, chunk)
    finally:
        cur.close()


def count_changed(session: Session, res: Resource, since: int, upto: int,
                  row_filter: RowFilter | None = None) -> int:
    """Keys changed in (since, upto] whose row passes the row filter (what an incremental
    export returns: one row per key)."""
    if not row_filter:
        inner = (select(ChangeLog.row_key).where(ChangeLog.resource_id == res.id, ChangeLog.seq > since,
                                                 ChangeLog.seq <= upto).group_by(ChangeLog.row_key).subquery())
        return int(session.execute(select(func.count()).select_from(inner)).scalar_one())
    total = 0
    for rows in _last_changes(session, res, since, upto, LOOKUP_CHUNK):
        keys = [parse_key(res, k) for _, _, k in rows]
        total += len(rows_by_keys(session, res, keys, [], row_filter, include_deleted=True))
    return total


def stream_changed(session: Session, res: Resource, fields: Sequence[str], since: int, upto: int,
                   row_filter: RowFilter | None = None,
                   chunk: int = LOOKUP_CHUNK) -> Iterator[list[tuple[Any, ...]]]:
    """One wire-form tuple `(_seq, _op, *fields)` per key changed in (since, upto], in the order
    of each key's last change, with its current row; a deleted row (`_op` D) carries its key
    fields only. Rows outside the row filter (by their current values) are left out."""
    conn = session.connection()
    table = table_for(res)
    types = _field_types(res)
    keys = list(res.key_fields)
    key_cols = [table.c[k] for k in keys]
    wire: list[Any] = [literal_column(_wire_sql(conn, types[f], f)).label(f"w_{i}")
                       for i, f in enumerate(fields)]
    for rows in _last_changes(session, res, since, upto, chunk):
        wanted = [(int(seq), op, parse_key(res, row_key)) for seq, op, row_key in rows]
        stmt = select(*key_cols, table.c._deleted, *wire).where(
            _keys_match(conn, key_cols, [k for _, _, k in wanted]), *_row_filter(table, row_filter or {}))
        found = {tuple(r[:len(keys)]): r for r in conn.execute(stmt)}
        out = []
        for seq, op, key in wanted:
            row = found.get(key)
            if row is None:
                continue
            values = tuple(row[len(keys) + 1:])
            if row[len(keys)]:  # deleted now: the key fields only
                out.append((seq, "D", *[v if f in keys else None for f, v in zip(fields, values, strict=True)]))
            else:
                out.append((seq, "U" if op == "D" else op, *values))
        if out:
            yield out


def export_snapshot(session: Session) -> None:
    """Make the session's transaction one consistent snapshot for everything read next (count,
    head, rows): REPEATABLE READ on PostgreSQL; SQLite's WAL read transaction already is one."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    else:
        session.connection()


__all__ = ["OPERATORS", "ChangedRow", "Condition", "SortKey", "changes_with_rows", "count_changed", "count_live",
           "export_snapshot", "get_row", "log_head", "page", "parse_key", "rows_by_keys", "stream_changed",
           "stream_live", "wire_value"]
