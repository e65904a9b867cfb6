"""The store: a typed table per published resource, written only through `upsert_rows` and
`delete_keys`, which append every real change to the change log under a per-resource
sequence. An identical row writes nothing; the caller's transaction makes a batch atomic."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, literal, literal_column, or_, select, text, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateIndex, CreateTable

from onceonly.catalog.models import Resource
from onceonly.db import utcnow
from onceonly.errors import Conflict
from onceonly.store import copy_text
from onceonly.store.models import ChangeLog
from onceonly.store.tables import forget, table_for, table_name_for
from onceonly.store.upsert import Stage, StageFormat, Veto, key_text, key_texts, prepare

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
    vetoed: list[int] = field(default_factory=list, repr=False)

    def add(self, other: UpsertResult) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted
        if other.first_seq is not None and self.first_seq is None:
            self.first_seq = other.first_seq
        if other.last_seq is not None:
            self.last_seq = other.last_seq
        self.vetoed.extend(other.vetoed)


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
                batch_id: int | None = None, *, digests: Sequence[int | None] | None = None,
                veto: Veto | None = None, chunk_size: int = CHUNK, unique: bool = False) -> UpsertResult:
    """Insert new keys, update changed rows, skip identical ones; log each real change.
    Rows carry typed values keyed by field name; absent fields keep their stored value.

    `digests` (one per row, aligned with `rows`) are stored with the rows written; `veto` is
    shown, before anything is written, the digest each matching stored row had, and returns the
    rows (indexes into `rows`) to leave out — ingest uses it to keep a key's first row of a file.
    `unique`: the caller vouches that no key repeats (else the last row of a key wins)."""
    _require_published(res)
    lock_resource(session, res)
    total = UpsertResult()
    table = table_for(res)
    stage: Stage | None = None
    offset = 0
    try:
        for chunk in _chunks(rows, chunk_size):
            if stage is None:
                stage = Stage(session.connection(), res, table)
            part = digests[offset:offset + len(chunk)] if digests is not None else None
            total.add(_upsert_chunk(session, res, stage, chunk, batch_id, part, veto, offset, unique))
            offset += len(chunk)
    finally:
        if stage is not None:
            stage.drop()
    return total


def upsert_columns(session: Session, res: Resource, fmt: StageFormat, columns: list[list[Any]],
                   keys: list[list[Any]], digests: Sequence[int | None], batch_id: int | None,
                   veto: Veto | None = None) -> UpsertResult:
    """`upsert_rows` for rows converted already (`StageFormat.columns` and `.key_columns`), all
    carrying the same fields, no key twice: what ingest's checking workers hand the writer."""
    _require_published(res)
    lock_resource(session, res)
    if not keys or not keys[0]:
        return UpsertResult()
    stage = Stage(session.connection(), res, table_for(res))
    try:
        staged = [list(range(len(keys[0]))), *columns, key_texts(keys), digests]
        return _apply_staged(session, res, stage, fmt.present, staged, batch_id, veto, 0, converted=True)
    finally:
        stage.drop()


def is_empty(session: Session, res: Resource) -> bool:
    """No row at all, not even a deleted one: every key a writer holding the lock adds is new."""
    table = table_for(res)
    return session.connection().execute(select(literal(1)).select_from(table).limit(1)).first() is None


def insert_new(session: Session, res: Resource, fmt: StageFormat, columns: list[list[Any]],
               keys: list[list[Any]], digests: Sequence[int | None], batch_id: int | None) -> UpsertResult:
    """Insert rows whose keys the caller knows are not stored (see `is_empty`) straight into the
    table, with no stage and no comparison: an initial load. Logged like `upsert_rows`."""
    _require_published(res)
    lock_resource(session, res)
    count = len(keys[0]) if keys else 0
    if not count:
        return UpsertResult()
    conn = session.connection()
    table = table_for(res)
    now = utcnow()
    first = _reserve(session, res, count)
    names = [*fmt.present, "_digest", "_version", "_created_at", "_updated_at", "_batch_id", "_deleted"]
    n = len(digests)
    by_rowid = conn.dialect.name == "sqlite" and len(res.key_fields) == 1 and all(
        f.type == "string" for f in res.fields if f.name == res.key_fields[0])
    before = conn.execute(select(func.max(literal_column("_rowid_"))).select_from(table)).scalar() if by_rowid else None
    bulk_insert_columns(conn, table, names, [*columns, digests, (1,) * n, (now,) * n, (now,) * n,
                                             (batch_id,) * n, (False,) * n], converted=True, constants=5)
    if by_rowid:
        _log_appended(conn, res, table, before or 0, first, n, batch_id, now)
        return UpsertResult(inserted=count, first_seq=first, last_seq=first + count - 1)
    texts = key_texts(keys)
    bulk_insert_columns(conn, ChangeLog.__table__, ["seq", "row_key", "resource_id", "op", "batch_id", "at"],
                        [range(first, first + n), texts, (res.id,) * n, ("I",) * n, (batch_id,) * n, (now,) * n],
                        constants=4)
    return UpsertResult(inserted=count, first_seq=first, last_seq=first + count - 1)


def _log_appended(conn: Connection, res: Resource, table: Any, before: int, first: int, n: int,
                  batch_id: int | None, now: Any) -> None:
    """The change log of `n` rows just appended to a SQLite table, written from the table
    itself: a rowid table gives appended rows the rowids after the largest before (the key here
    is text, so the rowid is not the key), in insertion order, so row `before + i` gets sequence
    number `first + i - 1`. Nothing crosses from Python per row."""
    rowid: Any = literal_column("_rowid_")  # `rowid` may be a field's name; no field starts with "_"
    log: Any = ChangeLog.__table__
    rows = select(literal(res.id), rowid + (first - before - 1), literal("I"), table.c[res.key_fields[0]],
                  bindparam("batch", batch_id, type_=log.c.batch_id.type), bindparam("at", now, type_=log.c.at.type)
                  ).where(rowid > before).order_by(rowid)
    done = conn.execute(insert(log).from_select(["resource_id", "seq", "op", "row_key", "batch_id", "at"], rows))
    if done.rowcount != n:  # cannot happen with SQLite's rowid rule; never log what was not written
        raise RuntimeError(f"change log of {n} appended rows found {done.rowcount}")


def _upsert_chunk(session: Session, res: Resource, stage: Stage, chunk: list[dict[str, Any]],
                  batch_id: int | None, digests: Sequence[int | None] | None, veto: Veto | None,
                  offset: int, unique: bool) -> UpsertResult:
    result = UpsertResult()
    for present, columns in prepare(res, chunk, list(res.key_fields), digests, unique=unique):
        result.add(_apply_staged(session, res, stage, present, columns, batch_id, veto, offset))
    return result


def _apply_staged(session: Session, res: Resource, stage: Stage, present: list[str], columns: list[Sequence[Any]],
                  batch_id: int | None, veto: Veto | None, offset: int, converted: bool = False) -> UpsertResult:
    """Stage one group of rows, let the database classify them, hear the veto, write."""
    keys = list(res.key_fields)
    result = UpsertResult()
    stage.clear()
    stage.load(present, columns, converted=converted)
    stage.classify(keys, present)
    if veto is not None:
        pairs = [(offset + i, d) for i, d in stage.stored_digests()]
        dropped = [i - offset for i in veto(pairs)] if pairs else []
        if dropped:
            stage.remove(dropped)
            result.vetoed.extend(offset + i for i in dropped)
    counts = stage.counts()
    result.inserted += counts.get("I", 0) + counts.get("R", 0)
    result.updated += counts.get("U", 0)
    result.unchanged += counts.get("N", 0)
    changes = counts.get("I", 0) + counts.get("R", 0) + counts.get("U", 0)
    if changes:
        first = _reserve(session, res, changes)
        stage.apply(res, keys, present, first, batch_id, utcnow())
        result.first_seq, result.last_seq = first, first + changes - 1
    return result


def _append_log(session: Session, res: Resource, first: int, log: list[tuple[str, tuple[Any, ...]]],
                batch_id: int | None, now: Any) -> None:
    bulk_insert(session.connection(), ChangeLog.__table__, ["resource_id", "seq", "op", "row_key", "batch_id", "at"],
                [(res.id, first + i, op, key_text(key), batch_id, now) for i, (op, key) in enumerate(log)])


def bulk_insert(conn: Connection, table: Any, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    """Insert many rows with the least per-row work (see `bulk_insert_columns`)."""
    if rows:
        bulk_insert_columns(conn, table, columns, list(zip(*rows, strict=True)))


def bulk_insert_columns(conn: Connection, table: Any, columns: list[str], values: Sequence[Sequence[Any]],
                        converted: bool = False, constants: int = 0) -> None:
    """Insert rows given column by column: COPY on PostgreSQL; on SQLite one executemany of
    plain tuples, with each column's SQLAlchemy bind conversion applied once per column rather
    than through the per-row parameter machinery (a column holding one value throughout, such as
    the batch's timestamp, is converted once). `converted`: the values are driver-ready already
    (see upsert.StageFormat)."""
    if not values or not len(values[0]):
        return
    preparer = conn.dialect.identifier_preparer
    names = ", ".join(preparer.quote(c) for c in columns)
    if conn.dialect.name == "postgresql":
        raw = conn.connection.driver_connection
        assert raw is not None
        n = len(columns)
        texts = [copy_text.column_text(col, constant=i >= n - constants) for i, col in enumerate(values)]
        with raw.cursor() as cur, cur.copy(f"COPY {preparer.quote(table.name)} ({names}) FROM STDIN") as copy:
            if all(t is not None for t in texts):  # whole columns as text: see store/copy_text.py
                copy.write(copy_text.block(texts))  # type: ignore[arg-type]
            else:
                for row in zip(*values, strict=True):
                    copy.write_row(row)
        return
    procs = [table.c[c].type._cached_bind_processor(conn.dialect) for c in columns]
    if converted:  # the leading columns are driver-ready; trailing `constants` (one value each) are not
        procs = [None] * (len(columns) - constants) + procs[len(columns) - constants:]
    cols: list[Any] = list(values)
    for i, proc in enumerate(procs):
        if proc is None:
            continue
        col = cols[i]
        if col.count(col[0]) == len(col):
            cols[i] = (proc(col[0]),) * len(col)
        else:
            cols[i] = [proc(v) for v in col]
    marks = ["?"] * len(columns)
    if constants:  # one value for every row: written into the statement, not bound per row
        marks[-constants:] = [_sql_literal(col[0]) for col in cols[-constants:]]
        cols = cols[:-constants]
    conn.exec_driver_sql(f"INSERT INTO {preparer.quote(table.name)} ({names}) VALUES ({', '.join(marks)})",
                         list(zip(*cols, strict=True)))


def _sql_literal(value: Any) -> str:
    """A driver-ready constant as SQLite literal (our own numbers and timestamps only)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


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


def stage_unclaimed_digests(session: Session, res: Resource, digests: Iterable[int]) -> None:
    """Digests of live rows no row of a full load stood for (see ingest's fast path): with
    `spare_claimed`, only rows with one of these digests — or none — can be missing."""
    from sqlalchemy import BigInteger, Column, MetaData, Table

    conn = session.connection()
    staged = Table(f"tmp_unclaimed_{res.id}", MetaData(), Column("d", BigInteger, primary_key=True),
                   prefixes=["TEMPORARY"])
    conn.execute(text(f"DROP TABLE IF EXISTS {staged.name}"))
    conn.execute(CreateTable(staged))
    for chunk in _chunks(({"d": d} for d in digests), CHUNK):
        conn.execute(insert(staged), chunk)


def _missing(res: Resource, table: Any, spare_claimed: bool) -> Any:
    staged = _stage_table(res)
    missing = ~select(staged).where(and_(*[staged.c[k] == table.c[k] for k in res.key_fields])).exists()
    if spare_claimed:
        missing = and_(missing, or_(table.c._digest.is_(None),
                                    table.c._digest.in_(text(f"SELECT d FROM tmp_unclaimed_{res.id}"))))
    return missing


def count_missing(session: Session, res: Resource, spare_claimed: bool = False) -> tuple[int, int]:
    """(live rows, live rows whose key was not staged) — one anti-join, set-based."""
    table = table_for(res)
    conn = session.connection()
    live = table.c._deleted.is_(False)
    total = int(conn.execute(select(func.count()).select_from(table).where(live)).scalar_one())
    gone = int(conn.execute(select(func.count()).select_from(table)
                            .where(live, _missing(res, table, spare_claimed))).scalar_one())
    return total, gone


def delete_missing(session: Session, res: Resource, batch_id: int | None, spare_claimed: bool = False) -> int:
    """Delete every live row whose key was not staged, then drop the stage."""
    table = table_for(res)
    conn = session.connection()
    key_cols = [table.c[k] for k in res.key_fields]
    keys = [tuple(r) for r in conn.execute(select(*key_cols).where(
        table.c._deleted.is_(False), _missing(res, table, spare_claimed)))]
    conn.execute(text(f"DROP TABLE IF EXISTS {_stage_table(res).name}"))
    conn.execute(text(f"DROP TABLE IF EXISTS tmp_unclaimed_{res.id}"))
    return delete_keys(session, res, keys, batch_id) if keys else 0


def live_digests(session: Session, res: Resource) -> Iterator[int]:
    """The source-row digests of the live rows (streamed)."""
    for block in live_digest_blocks(session, res):
        for (d,) in block:
            yield d


def live_digest_blocks(session: Session, res: Resource) -> Iterator[list[tuple[int]]]:
    """`live_digests` as the driver's blocks of one-tuples (turned into arrays in C)."""
    table = table_for(res)
    conn = session.connection()
    raw = conn.connection.driver_connection
    assert raw is not None
    live = "NOT _deleted" if conn.dialect.name == "postgresql" else "_deleted = 0"
    sql = f"SELECT _digest FROM {conn.dialect.identifier_preparer.quote(table.name)} " \
          f"WHERE {live} AND _digest IS NOT NULL"
    # The driver's own cursor, a block at a time: millions of bare ints, no Row objects.
    cur = raw.cursor(name="live_digests") if conn.dialect.name == "postgresql" else raw.cursor()
    try:
        cur.execute(sql)
        while block := cur.fetchmany(100_000):
            yield block
    finally:
        cur.close()


def _stage_table(res: Resource) -> Any:
    from sqlalchemy import Column, MetaData, Table

    table = table_for(res)
    return Table(f"tmp_seen_{res.id}", MetaData(),
                 *[Column(k, table.c[k].type, primary_key=True) for k in res.key_fields],
                 prefixes=["TEMPORARY"])
