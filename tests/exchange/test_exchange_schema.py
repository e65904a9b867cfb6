"""Migration 0004 creates exactly what the exchange models describe, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from onceonly.db import Database
from onceonly.ops.migrate import target_metadata

TABLES = {"exchange_systems", "exchange_credentials", "exchange_nonces", "exchange_services",
          "exchange_applications", "exchange_decisions", "exchange_grants", "exchange_usage"}


def _touches_exchange(diff: object) -> bool:
    return "exchange_" in repr(diff)


def test_tables_exist(db: Database) -> None:
    assert set(inspect(db.engine).get_table_names()) >= TABLES


def test_models_match_migration(db: Database) -> None:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = [d for d in compare_metadata(ctx, target_metadata) if _touches_exchange(d)]
    assert diffs == []
