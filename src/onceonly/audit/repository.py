"""Every read query of the audit domain: filtered keyset pages and streamed iteration.

Keyset on seq (``seq > after ORDER BY seq``) with the (system, seq), (service, seq) and
(kind, seq) indexes, so a page costs the same at the start and a million records in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import ColumnElement, Connection, select
from sqlalchemy.orm import Session

from onceonly.audit.models import AuditRecord
from onceonly.audit.schemas import AuditFilter, AuditRecordOut

_t = AuditRecord.metadata.tables["audit_records"]


def _where(f: AuditFilter) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if f.since is not None:
        out.append(_t.c.at >= f.since)
    if f.until is not None:
        out.append(_t.c.at < f.until)
    for name in ("system", "service", "kind", "status"):
        value = getattr(f, name)
        if value is not None:
            out.append(_t.c[name] == value)
    return out


def page(db: Session | Connection, f: AuditFilter, after: int = 0, limit: int = 100) -> list[AuditRecordOut]:
    return [AuditRecordOut(**r) for r in rows(db, f, after, limit)]


def rows(db: Session | Connection, f: AuditFilter, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    """Matching records after seq `after` as plain dicts with the canonical keys ("time", not "at")."""
    result = db.execute(select(_t).where(_t.c.seq > after, *_where(f)).order_by(_t.c.seq).limit(limit))
    out = []
    for r in result:
        row = dict(r._mapping)
        row["time"] = row.pop("at")
        out.append(row)
    return out


def iter_rows(db: Session | Connection, f: AuditFilter, chunk: int = 2000,
              limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Matching records in seq order, fetched `chunk` at a time (bounded memory)."""
    after, left = 0, limit
    while left is None or left > 0:
        batch = rows(db, f, after, chunk if left is None else min(chunk, left))
        if not batch:
            return
        yield from batch
        after = batch[-1]["seq"]
        if left is not None:
            left -= len(batch)
