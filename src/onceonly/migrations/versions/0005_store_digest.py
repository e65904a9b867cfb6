"""store: the source-row digest column on every resource table

Resource tables (r_*) are made at publish time, so this migration walks the existing ones and
adds the nullable `_digest` column ingest's unchanged-row fast path keeps; rows loaded before it
have none and are simply checked again on their next load.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def _resource_tables() -> list[str]:
    inspector = sa.inspect(op.get_bind())
    return [t for t in inspector.get_table_names() if t.startswith("r_")]


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table in _resource_tables():
        if "_digest" not in {c["name"] for c in inspector.get_columns(table)}:
            op.add_column(table, sa.Column("_digest", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table in _resource_tables():
        if "_digest" in {c["name"] for c in inspector.get_columns(table)}:
            with op.batch_alter_table(table) as batch:
                batch.drop_column("_digest")
