"""The harness itself: both backends come up migrated, with the guarantees the app relies on."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError

from onceonly.db import Database
from onceonly.ops.migrate import current_revision, head_revision


def test_migrations_applied(db: Database) -> None:
    assert inspect(db.engine).has_table("organizations")
    assert current_revision(db.engine) == head_revision()


def test_sqlite_wal_and_foreign_keys(sqlite_db: Database) -> None:
    """WAL lets readers run during writes; foreign_keys is off by default in SQLite."""
    with sqlite_db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_staff_actions_is_append_only(db: Database) -> None:
    """三员分立: the staff action log refuses UPDATE and DELETE at the database level."""
    insert = text(
        "INSERT INTO staff_actions (at, username, action, target, detail, outcome) "
        "VALUES (:at, 'admin', 'login', 'session', :detail, 'ok')"
    )
    with db.engine.begin() as conn:
        conn.execute(insert, {"at": datetime.now(UTC), "detail": "{}"})
    for statement in ("DELETE FROM staff_actions", "UPDATE staff_actions SET action = 'x'"):
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(statement))
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT action FROM staff_actions")).scalars().all() == ["login"]


@pytest.mark.postgresql
def test_pg_url_gives_fresh_named_database(pg_url: Callable[[str], str]) -> None:
    url = pg_url("scratch")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            name = conn.execute(text("SELECT current_database()")).scalar()
            tables = conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
            assert tables.scalar() == 0
    finally:
        engine.dispose()
    assert name is not None
    assert "scratch" in name
