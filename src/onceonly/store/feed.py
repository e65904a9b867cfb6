"""The change log read with the rows it points at: what a push feed (webhook subscriptions)
sends. One range scan on the log, then one keyed lookup of the rows those changes touched —
never a scan of the resource table.

The log keeps keys, not row images, so a change comes with the row *as stored now*: several
changes of one key carry the same, newest values, and a row deleted since comes back flagged
`_deleted`. `where` (e.g. a grant's row filter) is applied to that stored row; a change whose
row does not match gets `row=None`, so the caller can skip it without learning its values."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, select, true, tuple_
from sqlalchemy.orm import Session

from onceonly.catalog.models import Resource
from onceonly.store.service import changes_since
from onceonly.store.tables import table_for


@dataclass(frozen=True)
class FeedChange:
    seq: int
    op: str  # I, U, D
    key: tuple[Any, ...]  # typed key values, in key-field order
    row: dict[str, Any] | None  # the stored row (fields and system columns) if it matches `where`


def changes_with_rows(session: Session, res: Resource, since: int, limit: int,
                      where: ColumnElement[bool] | None = None) -> list[FeedChange]:
    """Up to `limit` changes after cursor `since`, in seq order, each with its current row."""
    changes = changes_since(session, res, since, limit)
    if not changes:
        return []
    table = table_for(res)
    types = {f.name: f.type for f in res.fields}
    keys = {c.key: parse_key(c.key, res.key_fields, types) for c in changes}
    rows = _rows_by_key(session, res, table, list(dict.fromkeys(keys.values())), where)
    return [FeedChange(c.seq, c.op, keys[c.key], rows.get(keys[c.key])) for c in changes]


def last_seq(session: Session, res: Resource) -> int:
    """The resource version's newest change-log seq (0 before its first change)."""
    value = session.scalar(select(Resource.last_seq).where(Resource.id == res.id))
    return int(value or 0)


def parse_key(text: str, key_fields: Sequence[str], types: dict[str, str]) -> tuple[Any, ...]:
    """The typed key back from its change-log text (the inverse of `upsert.key_text`)."""
    parts = [text] if len(key_fields) == 1 else json.loads(text)
    return tuple(_typed(types.get(name, "string"), part) for name, part in zip(key_fields, parts, strict=True))


def _typed(kind: str, value: str) -> Any:
    match kind:
        case "integer":
            return int(value)
        case "number":
            return float(value)
        case "boolean":
            return value == "True"
        case "date":
            return date.fromisoformat(value)
        case "datetime":
            return datetime.fromisoformat(value)
    return value


def _rows_by_key(session: Session, res: Resource, table: Table, keys: list[tuple[Any, ...]],
                 where: ColumnElement[bool] | None) -> dict[tuple[Any, ...], dict[str, Any]]:
    key_cols = [table.c[k] for k in res.key_fields]
    match = key_cols[0].in_([k[0] for k in keys]) if len(key_cols) == 1 else tuple_(*key_cols).in_(keys)
    stmt = select(table).where(and_(match, where if where is not None else true()))
    return {tuple(row[k] for k in res.key_fields): dict(row)
            for row in session.connection().execute(stmt).mappings()}
