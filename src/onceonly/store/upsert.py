"""Set-based upsert: a chunk of rows goes into a temporary stage table in one bulk write, and the
database itself classifies it (insert / update / revive / unchanged) against the resource table
and applies it with a handful of INSERT … SELECT and UPDATE … FROM statements.

Python then touches each row once (to build a tuple) instead of fetching and comparing every
stored row; on PostgreSQL the stage is filled by COPY."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text, bindparam, text
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateTable

from onceonly.catalog.models import Resource
from onceonly.db import UTCDateTime
from onceonly.errors import ValidationFailed
from onceonly.store.models import ChangeLog

# (row index in the call, digest the stored row had) → indexes the caller wants left out.
Veto = Callable[[list[tuple[int, int]]], Iterable[int]]


def key_text(key: tuple[Any, ...]) -> str:
    """Change-log key: the bare value for a one-field key, a JSON array for a composite one."""
    import json

    if len(key) == 1:
        return str(key[0])
    return json.dumps([str(k) for k in key], ensure_ascii=False)


def _as_utc(value: datetime) -> datetime:
    """Stored datetimes come back aware in UTC; compare like with like (naive means UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Stage:
    """The temporary table one upsert call stages its rows in (dropped when the call ends)."""

    def __init__(self, conn: Connection, res: Resource, table: Table) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        self.table = table
        self.fields = [f.name for f in res.fields]
        cols: list[Column[Any]] = [Column("_ord", Integer, primary_key=True, autoincrement=False)]
        cols += [Column(name, table.c[name].type) for name in self.fields]
        cols += [Column("_key", Text), Column("_digest", BigInteger), Column("_op", String(1)),
                 Column("_old", BigInteger)]
        self.stage = Table(f"tmp_up_{res.id}", MetaData(), *cols, prefixes=["TEMPORARY"])
        if self.pg:
            self.stage.dialect_options["postgresql"]["on_commit"] = "DROP"
        q = conn.dialect.identifier_preparer.quote
        self.q = q
        self.t = q(table.name)
        self.s = q(self.stage.name)
        self.drop()
        conn.execute(CreateTable(self.stage))

    def drop(self) -> None:
        self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.q(self.stage.name)}")

    def clear(self) -> None:
        self.conn.exec_driver_sql(f"DELETE FROM {self.s}")

    def load(self, present: list[str], columns: list[Sequence[Any]], converted: bool = False) -> None:
        from onceonly.store.service import bulk_insert_columns

        bulk_insert_columns(self.conn, self.stage, ["_ord", *present, "_key", "_digest"], columns,
                            converted=converted)
        if self.pg:
            self.conn.exec_driver_sql(f"ANALYZE {self.s}")

    def _key_join(self, keys: Sequence[str], left: str, right: str) -> str:
        return " AND ".join(f"{left}.{self.q(k)} = {right}.{self.q(k)}" for k in keys)

    def classify(self, keys: Sequence[str], present: Sequence[str]) -> None:
        """_op: I new key, R revives a deleted row, U changes a live one, N identical; _old the
        stored row's digest. Null-safe comparison of the fields the rows carry."""
        q = self.q
        differs = " IS DISTINCT FROM " if self.pg else " IS NOT "
        changed = " OR ".join(f"t.{q(f)}{differs}{self.s}.{q(f)}" for f in present if f not in keys) or "FALSE"
        deleted = "t._deleted" if self.pg else "t._deleted = 1"
        self.conn.exec_driver_sql(f"UPDATE {self.s} SET _op = 'I'")
        self.conn.exec_driver_sql(
            f"UPDATE {self.s} SET _op = CASE WHEN {deleted} THEN 'R' WHEN {changed} THEN 'U' ELSE 'N' END, "
            f"_old = t._digest FROM {self.t} AS t WHERE {self._key_join(keys, 't', self.s)}")

    def stored_digests(self) -> list[tuple[int, int]]:
        """(row index, stored digest) of rows matching a live stored row that has a digest."""
        rows = self.conn.exec_driver_sql(
            f"SELECT _ord, _old FROM {self.s} WHERE _old IS NOT NULL AND _op IN ('U', 'N') ORDER BY _ord")
        return [(int(o), int(d)) for o, d in rows]

    def remove(self, ords: Iterable[int]) -> None:
        wanted = [{"o": o} for o in ords]
        if wanted:
            self.conn.execute(text(f"DELETE FROM {self.s} WHERE _ord = :o"), wanted)

    def counts(self) -> dict[str, int]:
        return {str(op): int(n) for op, n in self.conn.exec_driver_sql(
            f"SELECT _op, COUNT(*) FROM {self.s} GROUP BY _op")}

    def apply(self, res: Resource, keys: Sequence[str], present: Sequence[str], first_seq: int,
              batch_id: int | None, now: datetime) -> None:
        """Log the changes (sequence in row order), insert new rows, update changed ones."""
        q = self.q
        params = {"rid": res.id, "first": first_seq, "batch": batch_id, "now": now}
        types = {"now": UTCDateTime(), "batch": BigInteger()}
        log = ChangeLog.__tablename__
        changed_ops = "('I', 'U', 'R')"
        self.conn.execute(text(
            f"INSERT INTO {q(log)} (resource_id, seq, op, row_key, batch_id, at) "
            f"SELECT :rid, :first - 1 + ROW_NUMBER() OVER (ORDER BY _ord), "
            f"CASE _op WHEN 'U' THEN 'U' ELSE 'I' END, _key, :batch, :now "
            f"FROM {self.s} WHERE _op IN {changed_ops}").bindparams(*_typed(types)), params)
        cols = ", ".join(q(f) for f in self.fields)
        false = "FALSE" if self.pg else "0"
        self.conn.execute(text(
            f"INSERT INTO {self.t} ({cols}, _version, _created_at, _updated_at, _batch_id, _deleted, _digest) "
            f"SELECT {cols}, 1, :now, :now, :batch, {false}, _digest FROM {self.s} WHERE _op = 'I'"
        ).bindparams(*_typed(types)), params)
        sets = [f"{q(f)} = s.{q(f)}" for f in present if f not in keys]
        sets += ["_version = t._version + 1", "_updated_at = :now", "_batch_id = :batch", f"_deleted = {false}",
                 "_digest = s._digest"]
        self.conn.execute(text(
            f"UPDATE {self.t} AS t SET {', '.join(sets)} FROM {self.s} AS s "
            f"WHERE {self._key_join(keys, 't', 's')} AND s._op IN ('U', 'R')"
        ).bindparams(*_typed(types)), params)


def _typed(types: Mapping[str, Any]) -> list[Any]:
    return [bindparam(name, type_=t) for name, t in types.items()]


Staged = tuple[list[str], list[Sequence[Any]]]  # (the fields the rows carry, stage columns)


def prepare(res: Resource, rows: Sequence[Mapping[str, Any]], keys: Sequence[str],
            digests: Sequence[int | None] | None, *, unique: bool = False) -> list[Staged]:
    """Stage columns (`_ord`, the fields the rows carry, `_key`, `_digest`), one group per set
    of fields carried: absent fields keep their stored value, so rows carrying different fields
    are compared and written separately. A key given twice: the last row wins — unless the
    caller vouches with `unique` that no key repeats, which skips looking."""
    fields = [f.name for f in res.fields]
    known = set(fields)
    instants = {f.name for f in res.fields if f.type == "datetime"}
    if unique and rows:
        first = rows[0].keys()
        if all(r.keys() == first for r in rows):
            return [_columns(rows, list(range(len(rows))), [f for f in fields if f in first], known, keys, instants,
                             digests)]
    last: dict[tuple[Any, ...], int] = {}
    for i, row in enumerate(rows):
        last[tuple([row.get(k) for k in keys])] = i
    groups: dict[frozenset[str], list[int]] = {}
    for i in sorted(last.values()):
        groups.setdefault(frozenset(rows[i]), []).append(i)
    return [_columns([rows[i] for i in picked], picked, [f for f in fields if f in present], known, keys, instants,
                     digests) for present, picked in groups.items()]


def _columns(rows: Sequence[Mapping[str, Any]], ords: list[int], present: list[str], known: set[str],
             keys: Sequence[str], instants: set[str], digests: Sequence[int | None] | None) -> Staged:
    unknown = sorted(set(rows[0]) - known)
    if unknown:
        raise ValidationFailed(f"unknown fields: {', '.join(unknown)}", field=unknown[0])
    for k in keys:
        if k not in present:
            raise ValidationFailed(f"key field {k} is empty", field=k)
    cols: dict[str, list[Any]] = {f: [r[f] for r in rows] for f in present}
    for k in keys:
        if None in cols[k]:
            raise ValidationFailed(f"key field {k} is empty", field=k)
    for f in instants & set(present):
        cols[f] = [_as_utc(v) if isinstance(v, datetime) else v for v in cols[f]]
    digest_col: Sequence[int | None] = [digests[i] for i in ords] if digests is not None else [None] * len(rows)
    return present, [ords, *cols.values(), key_texts([cols[k] for k in keys]), digest_col]


def _copy_text_of(kind: str) -> Any:
    """The COPY text conversion of a field type's values (None: strings are text already)."""
    from onceonly.store.copy_text import text_of

    return None if kind == "string" else text_of


class StageFormat:
    """Turns typed rows into stage columns in the form the database driver takes — the same
    conversion `bulk_insert_columns` applies — so it can run in another process (ingest's
    checking workers) and the writer only binds. Plain data: picklable; processors are made on
    first use."""

    def __init__(self, res: Resource, present: Sequence[str], dialect: str) -> None:
        self.present = [f.name for f in res.fields if f.name in set(present)]
        self.types = {f.name: (f.type, f.length) for f in res.fields if f.name in set(present)}
        self.keys = list(res.key_fields)
        self.dialect = dialect
        self._procs: list[Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_procs": None}

    def _processors(self) -> list[Any]:
        if self._procs is None:
            from types import SimpleNamespace

            from onceonly.store.tables import column_type

            if self.dialect == "postgresql":  # COPY text (store/copy_text.py), made here in the worker
                self._procs = [_copy_text_of(t) for t, _ in (self.types[f] for f in self.present)]
            else:
                from sqlalchemy.dialects import sqlite

                dialect = sqlite.dialect()
                self._procs = [
                    column_type(SimpleNamespace(type=t, length=n))._cached_bind_processor(dialect)  # type: ignore[arg-type]
                    for t, n in (self.types[f] for f in self.present)]
        return self._procs

    def columns(self, rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
        out: list[list[Any]] = []
        for f, proc in zip(self.present, self._processors(), strict=True):
            col = [r.get(f) for r in rows]
            if self.types[f][0] == "datetime":
                col = [_as_utc(v) if isinstance(v, datetime) else v for v in col]
            if proc is not None and self.types[f][0] == "date":
                # SQLite stores a date as its ISO text, which is what isoformat() gives (years
                # 1-9999); anything else (None) goes through the driver's own processor.
                col = [v.isoformat() if v.__class__ is date else proc(v) for v in col]
            elif proc is not None:
                col = [proc(v) for v in col]
            out.append(col)
        return out

    def key_columns(self, rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
        """The key fields as typed values (for uniqueness, change-log keys and replace mode)."""
        return [[r.get(k) for r in rows] for k in self.keys]


def key_texts(key_columns: Sequence[Sequence[Any]]) -> Sequence[str]:
    if len(key_columns) == 1:
        col = key_columns[0]
        return col if all(v.__class__ is str for v in col) else [str(v) for v in col]
    return [key_text(k) for k in zip(*key_columns, strict=True)]
