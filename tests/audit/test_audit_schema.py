"""Migration 0003 builds exactly the audit tables the models declare, indexes included, and
starts the chain at the genesis head."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from onceonly.audit.models import GENESIS, AuditHead
from onceonly.db import Database
from onceonly.ops.migrate import target_metadata

AUDIT_TABLES = {"audit_records", "audit_head", "audit_checkpoints", "audit_anchors"}


def _table_of(diff: Any) -> str | None:
    if isinstance(diff, list):  # column modifications come as a list of tuples
        return _table_of(diff[0])
    for item in diff[1:]:
        name = getattr(item, "name", None) if not isinstance(item, str) else None
        table = getattr(item, "table", None)
        if table is not None and getattr(table, "name", None):
            return str(table.name)
        if name in AUDIT_TABLES:
            return str(name)
        if isinstance(item, str) and item in AUDIT_TABLES:
            return item
    return None


def test_migration_matches_the_models(db: Database) -> None:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = [d for d in compare_metadata(ctx, target_metadata) if _table_of(d) in AUDIT_TABLES]
    assert diffs == []


def test_lookup_indexes(db: Database) -> None:
    indexes = {i["name"]: i["column_names"] for i in inspect(db.engine).get_indexes("audit_records")}
    assert indexes["ix_audit_records_at"] == ["at"]
    assert indexes["ix_audit_records_system_seq"] == ["system", "seq"]
    assert indexes["ix_audit_records_service_seq"] == ["service", "seq"]
    assert indexes["ix_audit_records_kind_seq"] == ["kind", "seq"]


def test_chain_starts_at_genesis(db: Database) -> None:
    with db.session() as s:
        heads = s.scalars(select(AuditHead)).all()
    assert [(h.id, h.checkpoint_seq) for h in heads] == [(1, 0)]
    assert heads[0].seq >= 0 and (heads[0].seq > 0 or heads[0].hash == GENESIS)
