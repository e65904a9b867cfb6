"""exchange: the epoch token that tells worker processes their cached exchange metadata is stale

One row whose `token` changes (by trigger) with every committed change to what enforcement
reads on each call: systems, credentials, services, grants, organizations, resources and their
fields. Processes cache those rows and read only the token per call (exchange/snapshot.py).
The token is random (SQLite) or the writing transaction's id (PostgreSQL), so a rolled-back
change never leaves a token that a later, different change could repeat.

Updates that happen on every call or every load are left out: a credential's `last_used_at`,
a resource's `last_seq` and `updated_at` (snapshot users must not read those from the cache).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# table -> the columns whose update matters (None: every column)
WATCHED: dict[str, tuple[str, ...] | None] = {
    "exchange_systems": None,
    "exchange_credentials": ("system_id", "prefix", "key_hash", "hint", "expires_at", "revoked_at", "rotated_at",
                             "overlap_until", "replaced_by_id"),
    "exchange_services": None,
    "exchange_grants": None,
    "organizations": None,
    "resources": ("name", "version", "code", "title", "provider_id", "category_id", "share_type", "share_modes",
                  "status", "table_name", "key_fields", "query_fields", "rules", "previous_id"),
    "fields": None,
}


def upgrade() -> None:
    op.create_table('exchange_epoch',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('token', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exchange_epoch'))
    )
    op.execute("INSERT INTO exchange_epoch (id, token) VALUES (1, 0)")
    if op.get_bind().dialect.name == "sqlite":
        for table, columns in WATCHED.items():
            for event in ("INSERT", "UPDATE", "DELETE"):
                of = f" OF {', '.join(columns)}" if event == "UPDATE" and columns else ""
                op.execute(f"CREATE TRIGGER {table}_epoch_{event.lower()} AFTER {event}{of} ON {table} "
                           "BEGIN UPDATE exchange_epoch SET token = random() WHERE id = 1; END")
        return
    op.execute(
        "CREATE FUNCTION onceonly_exchange_epoch() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN UPDATE exchange_epoch SET token = txid_current() WHERE id = 1; RETURN NULL; END $$"
    )
    for table, columns in WATCHED.items():
        of = f" OF {', '.join(columns)}" if columns else ""
        op.execute(f"CREATE TRIGGER {table}_epoch AFTER INSERT OR UPDATE{of} OR DELETE OR TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION onceonly_exchange_epoch()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in WATCHED:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_epoch_{event}")
    else:
        for table in WATCHED:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_epoch ON {table}")
        op.execute("DROP FUNCTION IF EXISTS onceonly_exchange_epoch()")
    op.drop_table('exchange_epoch')
