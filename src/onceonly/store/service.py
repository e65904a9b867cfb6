"""The store: a typed table per published resource, written only through `upsert_rows` and
`delete_keys`, which append every real change to the change log under a per-resource
sequence. An identical row writes nothing; the caller's transaction makes a batch atomic."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, select, text, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateIndex, CreateTable

from onceonly.catalog.models import Resource
from onceonly.db import utcnow
from onceonly.errors import Conflict, ValidationFailed
from onceonly.store.models import ChangeLog
from onceonly.store.tables import forget, table_for, table_name_for

CHUNK = 2000


@dataclass
class UpsertResult:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    keys_seen: int = field(default=0, repr=False)

    def add(self, other: UpsertResult) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted
        if other.first_seq is not None and self.first_seq is None:
            self.first_seq = other.first_seq
        if other.last_seq is not None:
            self.last_seq = other.last_seq


@dataclass(frozen=True)
class Change:
    seq: int
    op: str
    key: str
    batch_id: int | None
    at: Any


def create_table(session: Session, res: Resource) -> None:
    """Create the resource's table and indexes (key → primary key, query fields → indexes)."""
    res.table_name = table_name_for(res)
    forget(res)
    table = table_for(res)
    conn = session.connection()
    conn.execute(CreateTable(table, if_not_exists=True))
    for index in table.indexes:
        conn.execute(CreateIndex(index, if_not_exists=True))


def add_columns(session: Session, res: Resource, names: Sequence[str], new_query_fields: Sequence[str]) -> None:
    """Grow a published table: nullable columns and indexes only."""
    conn = session.connection()
    forget(res)
    table = table_for(res)
    preparer = conn.dialect.identifier_preparer
    for name in names:
        col_type = table.c[name].type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE {preparer.quote(table.name)} ADD COLUMN {preparer.quote(name)} {col_type}"))
    for index in table.indexes:
        if any(c.name in new_query_fields for c in index.columns):
            conn.execute(CreateIndex(index, if_not_exists=True))


def _as_utc(value: datetime) -> datetime:
    """Stored datetimes come back aware in UTC; compare like with like (naive means UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _key_of(row: Mapping[Any, Any], keys: Sequence[str]) -> tuple[Any, ...]:
    return tuple(row[k] for k in keys)


def key_text(key: tuple[Any, ...]) -> str:
    """Change-log key: the bare value for a one-field key, a JSON array for a composite one."""
    if len(key) == 1:
        return str(key[0])
    return json.dumps([str(k) for k in key], ensure_ascii=False)


def lock_resource(session: Session, res: Resource) -> None:
    """Serialize writers of one resource for the rest of the transaction.

    Taken before reading the stored rows: under READ COMMITTED a batch that read first could
    compare against a row another batch is about to change, and lose that change."""
    from onceonly.catalog.models import Resource as R

    session.connection().execute(update(R).where(R.id == res.id).values(last_seq=R.last_seq))


def _reserve(session: Session, res: Resource, count: int) -> int:
    """Take the resource's write lock and `count` sequence numbers; returns the first.
    The UPDATE holds the row lock (PostgreSQL) / write lock (SQLite) until commit, so
    sequences commit in order and a cursor reader never skips one."""
    from onceonly.catalog.models import Resource as R

    conn = session.connection()
    conn.execute(update(R).where(R.id == res.id).values(last_seq=R.last_seq + count))
    last = conn.execute(select(R.last_seq).where(R.id == res.id)).scalar_one()
    session.expire(res, ["last_seq"])
    return int(last) - count + 1


def _keys_match(conn: Connection, key_cols: list[Any], keys: list[tuple[Any, ...]]) -> Any:
    """WHERE the row's key is one of `keys`. On PostgreSQL a one-field key goes as a single array
    parameter (`= ANY(%s)`) instead of thousands of expanded ones, which the driver would bind
    and the server parse one by one."""
    if len(key_cols) == 1:
        values = [k[0] for k in keys]
        if conn.dialect.name == "postgresql":
            from sqlalchemy import any_, bindparam, cast
            from sqlalchemy.dialects.postgresql import ARRAY

            col = key_cols[0]
            return col == any_(cast(bindparam("keys", values, type_=ARRAY(col.type)), ARRAY(col.type)))
        return key_cols[0].in_(values)
    return tuple_(*key_cols).in_(keys)


def _require_published(res: Resource) -> None:
    if res.status != "published" or not res.table_name:
        raise Conflict(f"resource {res.code} v{res.version} is {res.status}; publish it before loading data",
                       field="status")


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


def upsert_rows(session: Session, res: Resource, rows: Iterable[dict[str, Any]],
                batch_id: int | None = None) -> UpsertResult:
    """Insert new keys, update changed rows, skip identical ones; log each real change.
    Rows carry typed values keyed by field name; absent fields keep their stored value."""
    _require_published(res)
    lock_resource(session, res)
    total = UpsertResult()
    for chunk in _chunks(rows, CHUNK):
        total.add(_upsert_chunk(session, res, chunk, batch_id))
    return total


def _upsert_chunk(session: Session, res: Resource, chunk: list[dict[str, Any]],
                  batch_id: int | None) -> UpsertResult:
    table = table_for(res)
    keys = list(res.key_fields)
    fields = [f.name for f in res.fields]
    instants = [f.name for f in res.fields if f.type == "datetime"]
    known = set(fields)
    incoming: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in chunk:
        for k in keys:
            if row.get(k) is None:
                raise ValidationFailed(f"key field {k} is empty", field=k)
        if not row.keys() <= known:
            unknown = sorted(set(row) - known)
            raise ValidationFailed(f"unknown fields: {', '.join(unknown)}", field=unknown[0])
        if any(isinstance(row.get(f), datetime) for f in instants):
            row = {**row, **{f: _as_utc(row[f]) for f in instants if isinstance(row.get(f), datetime)}}
        incoming[_key_of(row, keys)] = row  # a key repeated in one chunk: the last row wins
    key_cols = [table.c[k] for k in keys]
    conn = session.connection()
    where = _keys_match(conn, key_cols, list(incoming))
    # Only what the comparison needs, as plain rows (no per-row dicts, no timestamp parsing).
    compared = [*fields, "_version", "_deleted"]
    pos = {name: i for i, name in enumerate(compared)}
    key_pos = [pos[k] for k in keys]
    existing = {
        tuple(r[i] for i in key_pos): r
        for r in conn.execute(select(*[table.c[c] for c in compared]).where(where)).all()
    }
    version_at, deleted_at = pos["_version"], pos["_deleted"]
    now = utcnow()
    inserts: list[tuple[Any, ...]] = []
    updates: list[dict[str, Any]] = []
    log: list[tuple[str, tuple[Any, ...]]] = []
    result = UpsertResult()
    for key, row in incoming.items():
        old = existing.get(key)
        if old is None:
            inserts.append((*[row.get(f) for f in fields], 1, now, now, batch_id, False))
            log.append(("I", key))
            result.inserted += 1
            continue
        was_deleted = old[deleted_at]
        if not was_deleted and all(old[pos[f]] == v for f, v in row.items()):
            result.unchanged += 1
            continue
        values = {f: row.get(f, old[pos[f]]) for f in fields}
        updates.append({**{f"b_{f}": v for f, v in values.items()}, "b__version": old[version_at] + 1,
                        "b__updated_at": now, "b__batch_id": batch_id})
        log.append(("I" if was_deleted else "U", key))
        if was_deleted:
            result.inserted += 1
        else:
            result.updated += 1
    if not log:
        return result
    first = _reserve(session, res, len(log))
    if inserts:
        bulk_insert(conn, table, [*fields, "_version", "_created_at", "_updated_at", "_batch_id", "_deleted"],
                    inserts)
    if updates:
        stmt = (
            update(table)
            .where(and_(*[table.c[k] == bindparam(f"b_{k}") for k in keys]))
            .values({**{f: bindparam(f"b_{f}") for f in fields if f not in keys},
                     "_version": bindparam("b__version"), "_updated_at": bindparam("b__updated_at"),
                     "_batch_id": bindparam("b__batch_id"), "_deleted": False})
        )
        conn.execute(stmt, updates)
    _append_log(session, res, first, log, batch_id, now)
    result.first_seq, result.last_seq = first, first + len(log) - 1
    return result


def _append_log(session: Session, res: Resource, first: int, log: list[tuple[str, tuple[Any, ...]]],
                batch_id: int | None, now: Any) -> None:
    bulk_insert(session.connection(), ChangeLog.__table__, ["resource_id", "seq", "op", "row_key", "batch_id", "at"],
                [(res.id, first + i, op, key_text(key), batch_id, now) for i, (op, key) in enumerate(log)])


def bulk_insert(conn: Connection, table: Any, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    """Insert many rows with the least per-row work: COPY on PostgreSQL; on SQLite one
    executemany of plain tuples, with each column's SQLAlchemy bind conversion applied once per
    column rather than through the per-row parameter machinery."""
    preparer = conn.dialect.identifier_preparer
    names = ", ".join(preparer.quote(c) for c in columns)
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur, cur.copy(f"COPY {preparer.quote(table.name)} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    procs = [table.c[c].type._cached_bind_processor(conn.dialect) for c in columns]
    if any(procs) and rows:
        # Column by column: a column holding one value throughout (the batch's timestamp, its id)
        # is converted once, the others in one list comprehension each.
        cols: list[Any] = list(zip(*rows, strict=True))
        for i, proc in enumerate(procs):
            if proc is None:
                continue
            col = cols[i]
            if col.count(col[0]) == len(col):
                cols[i] = (proc(col[0]),) * len(col)
            else:
                cols[i] = [proc(v) for v in col]
        rows = list(zip(*cols, strict=True))
    marks = ", ".join("?" for _ in columns)
    conn.exec_driver_sql(f"INSERT INTO {preparer.quote(table.name)} ({names}) VALUES ({marks})", rows)


def delete_keys(session: Session, res: Resource, keys: Iterable[tuple[Any, ...]],
                batch_id: int | None = None) -> int:
    """Soft-delete rows by key (the row stays, flagged, so a cursor reader learns of it)."""
    _require_published(res)
    lock_resource(session, res)
    table = table_for(res)
    key_cols = [table.c[k] for k in res.key_fields]
    conn = session.connection()
    deleted = 0
    for chunk in _chunks(({"k": k} for k in keys), CHUNK):
        wanted = [c["k"] for c in chunk]
        where = _keys_match(conn, key_cols, wanted)
        live = [tuple(r) for r in conn.execute(select(*key_cols).where(where, table.c._deleted.is_(False)))]
        if not live:
            continue
        now = utcnow()
        first = _reserve(session, res, len(live))
        conn.execute(
            update(table).where(and_(*[table.c[k] == bindparam(f"b_{k}") for k in res.key_fields]))
            .values(_deleted=True, _version=table.c._version + 1, _updated_at=now, _batch_id=batch_id),
            [{f"b_{k}": v for k, v in zip(res.key_fields, key, strict=True)} for key in live],
        )
        _append_log(session, res, first, [("D", k) for k in live], batch_id, now)
        deleted += len(live)
    return deleted


def changes_since(session: Session, res: Resource, since: int = 0, limit: int = 1000) -> list[Change]:
    """The change log after cursor `since`, in order (an index range scan on the primary key)."""
    rows = session.execute(
        select(ChangeLog.seq, ChangeLog.op, ChangeLog.row_key, ChangeLog.batch_id, ChangeLog.at)
        .where(ChangeLog.resource_id == res.id, ChangeLog.seq > since)
        .order_by(ChangeLog.seq).limit(limit)
    ).all()
    return [Change(*r) for r in rows]


def row_count(session: Session, res: Resource) -> int:
    if res.status == "draft" or not res.table_name:
        return 0
    table = table_for(res)
    return int(session.connection().execute(
        select(func.count()).select_from(table).where(table.c._deleted.is_(False))).scalar_one())


def fetch_rows(session: Session, res: Resource, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
    table = table_for(res)
    stmt = (select(*[table.c[f.name] for f in res.fields]).where(table.c._deleted.is_(False))
            .order_by(*[table.c[k] for k in res.key_fields]).offset(offset).limit(limit))
    return [dict(r) for r in session.connection().execute(stmt).mappings()]


def get_row(session: Session, res: Resource, key: tuple[Any, ...]) -> dict[str, Any] | None:
    table = table_for(res)
    cond = and_(*[table.c[k] == v for k, v in zip(res.key_fields, key, strict=True)])
    row = session.connection().execute(select(table).where(cond)).mappings().first()
    return dict(row) if row else None


def begin_stage(session: Session, res: Resource) -> None:
    """A temporary table for the keys a full load contains (replace mode); see `count_missing`."""
    conn = session.connection()
    staged = _stage_table(res)
    conn.execute(text(f"DROP TABLE IF EXISTS {staged.name}"))
    conn.execute(CreateTable(staged))


def stage_keys(session: Session, res: Resource, keys: Iterable[tuple[Any, ...]]) -> None:
    conn = session.connection()
    staged = _stage_table(res)
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(staged).on_conflict_do_nothing()
    else:
        stmt = insert(staged).prefix_with("OR IGNORE")
    for chunk in _chunks(({k: v for k, v in zip(res.key_fields, key, strict=True)} for key in keys), CHUNK):
        conn.execute(stmt, chunk)


def count_missing(session: Session, res: Resource) -> tuple[int, int]:
    """(live rows, live rows whose key was not staged) — one anti-join, set-based."""
    table = table_for(res)
    staged = _stage_table(res)
    conn = session.connection()
    live = table.c._deleted.is_(False)
    missing = ~select(staged).where(and_(*[staged.c[k] == table.c[k] for k in res.key_fields])).exists()
    total = int(conn.execute(select(func.count()).select_from(table).where(live)).scalar_one())
    gone = int(conn.execute(select(func.count()).select_from(table).where(live, missing)).scalar_one())
    return total, gone


def delete_missing(session: Session, res: Resource, batch_id: int | None) -> int:
    """Delete every live row whose key `keys_missing_from` did not stage, then drop the stage."""
    table = table_for(res)
    staged = _stage_table(res)
    conn = session.connection()
    missing = ~select(staged).where(and_(*[staged.c[k] == table.c[k] for k in res.key_fields])).exists()
    key_cols = [table.c[k] for k in res.key_fields]
    keys = [tuple(r) for r in conn.execute(select(*key_cols).where(table.c._deleted.is_(False), missing))]
    conn.execute(text(f"DROP TABLE IF EXISTS {staged.name}"))
    return delete_keys(session, res, keys, batch_id) if keys else 0


def _stage_table(res: Resource) -> Any:
    from sqlalchemy import Column, MetaData, Table

    table = table_for(res)
    return Table(f"tmp_seen_{res.id}", MetaData(),
                 *[Column(k, table.c[k].type, primary_key=True) for k in res.key_fields],
                 prefixes=["TEMPORARY"])
