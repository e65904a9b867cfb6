"""tamper-evident audit log

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import onceonly.db

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

GENESIS = "0" * 64
# Pruning is the one DELETE the triggers let through: a record covered by a retention anchor
# (which `onceonly audit prune` inserts, signed, in the same transaction) and older than 180
# days. Keep the 180 in step with onceonly.audit.service.MIN_RETENTION_DAYS.
REFUSED = "audit records are append-only: only records covered by a signed retention anchor and older than 180 days may be deleted"


def upgrade() -> None:
    op.create_table('audit_records',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('at', onceonly.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('system', sa.String(length=64), nullable=True),
    sa.Column('org', sa.String(length=40), nullable=True),
    sa.Column('username', sa.String(length=64), nullable=True),
    sa.Column('service', sa.String(length=64), nullable=True),
    sa.Column('mode', sa.String(length=16), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=True),
    sa.Column('target', sa.String(length=200), nullable=True),
    sa.Column('purpose', sa.String(length=200), nullable=True),
    sa.Column('request_digest', sa.String(length=64), nullable=True),
    sa.Column('status', sa.Integer(), nullable=True),
    sa.Column('records', sa.BigInteger(), nullable=True),
    sa.Column('bytes', sa.BigInteger(), nullable=True),
    sa.Column('latency_ms', sa.BigInteger(), nullable=True),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_records'))
    )
    with op.batch_alter_table('audit_records', schema=None) as batch_op:
        batch_op.create_index('ix_audit_records_at', ['at'], unique=False)
        batch_op.create_index('ix_audit_records_system_seq', ['system', 'seq'], unique=False)
        batch_op.create_index('ix_audit_records_service_seq', ['service', 'seq'], unique=False)
        batch_op.create_index('ix_audit_records_kind_seq', ['kind', 'seq'], unique=False)

    head = op.create_table('audit_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('checkpoint_seq', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_head'))
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS, "checkpoint_seq": 0}])
    op.create_table('audit_checkpoints',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('at', onceonly.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('key_id', sa.String(length=16), nullable=False),
    sa.Column('signature', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_checkpoints'))
    )
    op.create_table('audit_anchors',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('at', onceonly.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('cutoff', onceonly.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('pruned', sa.BigInteger(), nullable=False),
    sa.Column('key_id', sa.String(length=16), nullable=False),
    sa.Column('signature', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_anchors'))
    )
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_guards()
    else:
        _postgresql_guards()


def _sqlite_guards() -> None:
    op.execute(
        "CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records "
        "BEGIN SELECT RAISE(ABORT, 'audit_records is append-only'); END"
    )
    # Times are stored as 'YYYY-MM-DD HH:MM:SS.ffffff' UTC, which compares as text with datetime().
    op.execute(
        "CREATE TRIGGER audit_records_prune_guard BEFORE DELETE ON audit_records "
        "WHEN OLD.seq > COALESCE((SELECT max(seq) FROM audit_anchors), 0) "
        "OR OLD.at >= datetime('now', '-180 days') "
        f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END"
    )
    for table in ("audit_checkpoints", "audit_anchors"):
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
    op.execute(
        "CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head "
        "BEGIN SELECT RAISE(ABORT, 'audit_head cannot be deleted'); END"
    )
    op.execute(
        "CREATE TRIGGER audit_head_forward_only BEFORE UPDATE ON audit_head "
        "WHEN NEW.seq < OLD.seq OR NEW.checkpoint_seq < OLD.checkpoint_seq OR NEW.id <> OLD.id "
        "BEGIN SELECT RAISE(ABORT, 'audit_head only moves forward'); END"
    )


def _postgresql_guards() -> None:
    # onceonly_append_only() comes from 0001 (it raises '<table> is append-only').
    op.execute(
        "CREATE FUNCTION onceonly_audit_prune_guard() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN "
        "IF OLD.seq <= COALESCE((SELECT max(seq) FROM audit_anchors), 0) "
        "AND OLD.at < now() - interval '180 days' THEN RETURN OLD; END IF; "
        f"RAISE EXCEPTION '{REFUSED}'; "
        "END $$"
    )
    op.execute(
        "CREATE FUNCTION onceonly_audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN "
        "IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.seq >= OLD.seq "
        "AND NEW.checkpoint_seq >= OLD.checkpoint_seq THEN RETURN NEW; END IF; "
        "RAISE EXCEPTION 'audit_head only moves forward'; "
        "END $$"
    )
    op.execute(
        "CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records "
        "FOR EACH ROW EXECUTE FUNCTION onceonly_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_records_prune_guard BEFORE DELETE ON audit_records "
        "FOR EACH ROW EXECUTE FUNCTION onceonly_audit_prune_guard()"
    )
    for table in ("audit_checkpoints", "audit_anchors"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION onceonly_append_only()"
        )
    op.execute(
        "CREATE TRIGGER audit_head_guard BEFORE UPDATE OR DELETE ON audit_head "
        "FOR EACH ROW EXECUTE FUNCTION onceonly_audit_head_guard()"
    )
    for table in ("audit_records", "audit_checkpoints", "audit_anchors", "audit_head"):
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION onceonly_append_only()"
        )


def downgrade() -> None:
    op.drop_table('audit_anchors')
    op.drop_table('audit_checkpoints')
    op.drop_table('audit_head')
    with op.batch_alter_table('audit_records', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_records_kind_seq')
        batch_op.drop_index('ix_audit_records_service_seq')
        batch_op.drop_index('ix_audit_records_system_seq')
        batch_op.drop_index('ix_audit_records_at')
    op.drop_table('audit_records')
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS onceonly_audit_prune_guard() CASCADE")
        op.execute("DROP FUNCTION IF EXISTS onceonly_audit_head_guard() CASCADE")
