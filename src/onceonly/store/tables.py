"""Typed SQLAlchemy tables built from a resource's catalog description."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)
from sqlalchemy.types import TypeEngine

from onceonly.catalog.models import Field, Resource
from onceonly.db import UTCDateTime

SYSTEM_COLUMNS = ("_version", "_created_at", "_updated_at", "_batch_id", "_deleted", "_digest")
TABLE_PREFIX = "r_"

# Resource tables live on their own metadata so Alembic never treats them as platform tables.
resource_metadata = MetaData()
_lock = threading.RLock()
_cache: dict[tuple[str, int, tuple[str, ...]], Table] = {}


def table_name_for(res: Resource) -> str:
    return f"{TABLE_PREFIX}{res.name}_v{res.version}"


def index_name(table: str, column: str) -> str:
    """ix_<table>_<column>, within PostgreSQL's 63 chars: a long name is cut and made unique by a
    hash (plain cutting gave two query fields with a common prefix the same name, and
    CREATE INDEX IF NOT EXISTS then silently skipped the second)."""
    name = f"ix_{table}_{column}"
    if len(name) <= 63:
        return name
    return f"{name[:54]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def column_type(field: Field) -> TypeEngine[Any]:
    match field.type:
        case "string":
            return String(field.length) if field.length and field.length <= 4000 else Text()
        case "integer":
            return BigInteger()
        case "number":
            return Double()
        case "boolean":
            return Boolean()
        case "date":
            return Date()
        case "datetime":  # an instant: timestamptz on PostgreSQL, UTC on SQLite; naive means UTC
            return UTCDateTime()
    raise ValueError(f"unknown field type {field.type}")


def table_for(res: Resource) -> Table:
    """The Table of a published resource (cached per name and field list; thread-safe)."""
    with _lock:
        return _table_for(res)


def _table_for(res: Resource) -> Table:
    name = res.table_name or table_name_for(res)
    sig = (name, len(res.fields), tuple(res.query_fields))
    cached = _cache.get(sig)
    if cached is not None:
        return cached
    if name in resource_metadata.tables:
        resource_metadata.remove(resource_metadata.tables[name])
    cols: list[Column[object]] = []
    for f in res.fields:
        is_key = f.name in res.key_fields
        cols.append(Column(f.name, column_type(f), primary_key=is_key, nullable=not (is_key or f.required),
                           autoincrement=False))
    cols += [
        Column("_version", Integer, nullable=False, default=1),
        Column("_created_at", UTCDateTime, nullable=False),
        Column("_updated_at", UTCDateTime, nullable=False),
        Column("_batch_id", BigInteger, nullable=True),
        Column("_deleted", Boolean, nullable=False, server_default=false()),
        # Digest of the source row this version was loaded from (ingest's unchanged-row fast path).
        Column("_digest", BigInteger, nullable=True),
    ]
    table = Table(name, resource_metadata, *cols)
    for q in res.query_fields:
        if q not in res.key_fields[:1]:
            Index(index_name(name, q), table.c[q])
    _cache[sig] = table
    return table


def forget(res: Resource) -> None:
    """Drop cached Table objects after a schema change."""
    with _lock:
        _forget(res)


def _forget(res: Resource) -> None:
    for sig in [s for s in _cache if s[0] == (res.table_name or table_name_for(res))]:
        del _cache[sig]
