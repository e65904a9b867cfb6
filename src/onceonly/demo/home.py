"""Is there already a platform in this home (or database)? And, with --force, wipe it.

A database only migrated and loaded with the standard catalogs (`onceonly init`) is empty for
this purpose; any organization, user or resource table means someone's data is there."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, inspect, select, text

from onceonly.catalog.models import Organization, Resource
from onceonly.db import Database

SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def existing_content(db: Database) -> str | None:
    """A short description of what the database already holds, or None if it holds nothing."""
    from onceonly.accounts.models import User

    tables = set(inspect(db.engine).get_table_names())
    found: list[str] = []
    with db.engine.connect() as conn:
        for model, label in ((Organization, "organizations"), (User, "users"), (Resource, "resources")):
            if model.__tablename__ in tables:
                n = conn.execute(select(func.count()).select_from(model)).scalar_one()
                if n:
                    found.append(f"{n} {label}")
    data_tables = [t for t in tables if t.startswith("r_")]
    if data_tables:
        found.append(f"{len(data_tables)} resource tables")
    return ", ".join(found) or None


def sqlite_files(db: Database) -> list[Path]:
    name = db.engine.url.database
    if not name or name == ":memory:":
        return []
    return [Path(name + suffix) for suffix in SQLITE_SUFFIXES]


def wipe(db: Database) -> Database:
    """Remove the platform's data; returns a Database to use from now on.

    SQLite: the database file and its WAL/SHM companions are deleted. PostgreSQL: in one
    transaction, the platform's own tables (those of the models, the r_* resource tables and
    alembic_version) are dropped, and the functions its migrations made (named onceonly_*);
    any other object in the database is left alone."""
    if db.is_sqlite:
        db.dispose()
        for path in sqlite_files(db):
            path.unlink(missing_ok=True)
        return Database(db.settings)
    import onceonly.ops.migrate  # noqa: F401  (registers every model on the metadata)
    from onceonly.db import Base

    with db.engine.begin() as conn:
        present = set(inspect(conn).get_table_names())
        ours = [t for t in sorted(present) if t.startswith("r_")]
        ours += [t.name for t in reversed(Base.metadata.sorted_tables) if t.name in present]
        ours += ["alembic_version"] if "alembic_version" in present else []
        quote = conn.dialect.identifier_preparer.quote
        for name in ours:
            conn.execute(text(f"DROP TABLE IF EXISTS {quote(name)} CASCADE"))
        functions = conn.execute(text(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = current_schema() AND p.proname LIKE 'onceonly\\_%'")).scalars().all()
        for signature in functions:  # as printed by PostgreSQL itself, quoted where needed
            conn.execute(text(f"DROP FUNCTION IF EXISTS {signature} CASCADE"))
    return db
