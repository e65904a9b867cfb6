"""exchange subscriptions: webhooks, deliveries and their dead letters

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import onceonly.db

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('exchange_subscriptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('system_id', sa.Integer(), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=False),
    sa.Column('consumer_org_id', sa.Integer(), nullable=False),
    sa.Column('provider_org_id', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('fields', sa.JSON(), nullable=True),
    sa.Column('secret_enc', sa.Text(), nullable=True),
    sa.Column('secret_hint', sa.String(length=8), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=True),
    sa.Column('cursor', sa.BigInteger(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', onceonly.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lease_until', onceonly.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('lease_owner', sa.String(length=64), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_delivered_at', onceonly.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('dead_at', onceonly.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', onceonly.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', onceonly.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['consumer_org_id'], ['organizations.id'], name=op.f('fk_exchange_subscriptions_consumer_org_id_organizations')),
    sa.ForeignKeyConstraint(['provider_org_id'], ['organizations.id'], name=op.f('fk_exchange_subscriptions_provider_org_id_organizations')),
    sa.ForeignKeyConstraint(['service_id'], ['exchange_services.id'], name=op.f('fk_exchange_subscriptions_service_id_exchange_services')),
    sa.ForeignKeyConstraint(['system_id'], ['exchange_systems.id'], name=op.f('fk_exchange_subscriptions_system_id_exchange_systems')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exchange_subscriptions'))
    )
    op.create_index('ix_exchange_subscriptions_status_next_attempt_at', 'exchange_subscriptions', ['status', 'next_attempt_at'], unique=False)
    op.create_index('ix_exchange_subscriptions_system_id_service_id', 'exchange_subscriptions', ['system_id', 'service_id'], unique=False)
    op.create_index('ix_exchange_subscriptions_service_id', 'exchange_subscriptions', ['service_id'], unique=False)
    op.create_index('ix_exchange_subscriptions_consumer_org_id', 'exchange_subscriptions', ['consumer_org_id'], unique=False)
    op.create_index('ix_exchange_subscriptions_provider_org_id', 'exchange_subscriptions', ['provider_org_id'], unique=False)
    op.create_table('exchange_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sa.String(length=64), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('first_seq', sa.BigInteger(), nullable=True),
    sa.Column('last_seq', sa.BigInteger(), nullable=True),
    sa.Column('records', sa.Integer(), nullable=False),
    sa.Column('nbytes', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('worker', sa.String(length=64), nullable=True),
    sa.Column('at', onceonly.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['subscription_id'], ['exchange_subscriptions.id'], name=op.f('fk_exchange_deliveries_subscription_id_exchange_subscriptions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exchange_deliveries'))
    )
    op.create_index('ix_exchange_deliveries_subscription_id_id', 'exchange_deliveries', ['subscription_id', 'id'], unique=False)
    op.create_index('ix_exchange_deliveries_at', 'exchange_deliveries', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_exchange_deliveries_at', table_name='exchange_deliveries')
    op.drop_index('ix_exchange_deliveries_subscription_id_id', table_name='exchange_deliveries')
    op.drop_table('exchange_deliveries')
    op.drop_index('ix_exchange_subscriptions_provider_org_id', table_name='exchange_subscriptions')
    op.drop_index('ix_exchange_subscriptions_consumer_org_id', table_name='exchange_subscriptions')
    op.drop_index('ix_exchange_subscriptions_service_id', table_name='exchange_subscriptions')
    op.drop_index('ix_exchange_subscriptions_system_id_service_id', table_name='exchange_subscriptions')
    op.drop_index('ix_exchange_subscriptions_status_next_attempt_at', table_name='exchange_subscriptions')
    op.drop_table('exchange_subscriptions')
