"""Shared checks for the demo tests: read every published resource back and digest or validate it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from onceonly.catalog.models import Resource
from onceonly.store.tables import table_for

PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (float, int), "boolean": (bool,), "date": (date,),
    "datetime": (datetime,),
}


def published(session: Session) -> list[Resource]:
    return list(session.scalars(select(Resource).where(Resource.status == "published").order_by(Resource.name)))


def rows_of(session: Session, res: Resource) -> Iterator[dict[str, Any]]:
    """Every row, data fields only, in key order."""
    table = table_for(res)
    stmt = select(*[table.c[f.name] for f in res.fields]).order_by(*[table.c[k] for k in res.key_fields])
    for row in session.connection().execute(stmt).mappings():
        yield dict(row)


def content_digest(session: Session) -> dict[str, str]:
    """SHA-256 of each resource's rows (ordered by key): equal digests, equal data."""
    out: dict[str, str] = {}
    for res in published(session):
        h = hashlib.sha256()
        for row in rows_of(session, res):
            h.update(repr(sorted(row.items())).encode())
        out[res.name] = h.hexdigest()
    return out
