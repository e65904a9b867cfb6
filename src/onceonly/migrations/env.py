"""Alembic environment: uses the connection handed in by onceonly.ops.migrate."""

from __future__ import annotations

from alembic import context

from onceonly.ops.migrate import target_metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by a bare `alembic` call
    raise SystemExit("run migrations with `onceonly init`")



def _platform_only(name: str | None, type_: str, _parent: object) -> bool:
    """Resource tables (r_*) are made at publish time, not by migrations."""
    return not (type_ == "table" and name is not None and name.startswith("r_"))


context.configure(
    connection=connection,
    include_name=_platform_only,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
