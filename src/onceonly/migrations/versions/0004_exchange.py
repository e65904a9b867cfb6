"""systems, credentials, services, applications and grants

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import onceonly.db

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('exchange_systems',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('contact', sa.String(length=200), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('signing_required', sa.Boolean(), nullable=False),
    sa.Column('signing_secret_enc', sa.Text(), nullable=True),
    sa.Column('signing_secret_hint', sa.String(length=8), nullable=True),
    sa.Column('created_at', onceonly.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organizations.id'], name=op.f('fk_exchange_systems_org_id_organizations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exchange_systems')),
    sa.UniqueConstraint('code', name=op.f('uq_exchange_systems_code'))
    )
    op.create_index('ix_exchange_systems_org_id', 'exchange_systems', ['org_id'], unique=False)
    op.create_table('exchange_credentials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('system_id', sa.Integer(), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('hint', sa.String(length=8), nullable=False),
    sa.Column('created_at', onceonly.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('expires_at', onceonly.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', onceonly.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('rotated_at', onceonly.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('overlap_until', onceonly.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('replaced_by_id', sa.Integer(), nullable=True),
    sa.Column('last_used_at', onceonly.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['system_id'], ['exchange_systems.id'], name=op.f('fk_exchange_credentials_system_id_exchange_systems')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exchange_credentials')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_exchange_credentials_key_hash'))
    )
    op.create_index('ix_exchange_credentials_prefix', 'exchange_credentials', ['prefix'], unique=False)
    op.create_index('ix_exchange_credentials_system_id', 'exchange_credentials', ['system_id'], unique=False)
    op.create_table('exchange_nonces',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('system_id', sa.Integer(), nullable=False),
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('expires_at', onceonly.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['system_id'], ['exchange_systems.id'], name=op.f('fk_exchange_nonces_system_id_exchange_systems')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exchange_nonces')),
    sa.UniqueConstraint('system_id', 'nonce', name=op.f('uq_exchange_nonces_system_id_nonce'))
    )
    op.create_index('ix_exchange_nonces_system_id_expires_at', 'exchange_nonces', ['system_id', 'expires_at'], unique=False)
    op.create_table('exchange_services',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('provider_org_id', sa.Integer(), nullable=False),
    sa.Column('mode', sa.String(length=10), nullable=False),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('created_at', onceonly.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('published_at', onceonly.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['provider_org_id'], ['organizations.id'], name=op.f('fk_exchange_services_provider_org_id_organizations')),
    sa.ForeignKeyConstraint(['resource_id'], ['resources.id'], name=op.f('fk_exchange_services_resource_id_resources')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exchange_services')),
    sa.UniqueConstraint('code', name=op.f('uq_exchange_services_code'))
    )
    op.create_index('ix_exchange_services_provider_org_id', 'exchange_services', ['provider_org_id'], unique=False)
    op.create_index('ix_exchange_services_resource_id', 'exchange_services', ['resource_id'], unique=False)
    op.create_table('exchange_applications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('system_id', sa.Integer(), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=False),
    sa.Column('consumer_org_id', sa.Integer(), nullable=False),
    sa.Column('provider_org_id', sa.Integer(), nullable=False),
    sa.Column('fields_requested', sa.JSON(), nullable=False),
    sa.Column('fields_approved', sa.JSON(), nullable=True),
    sa.Column('purpose', sa.Text(), nullable=False),
    sa.Column('legal_basis', sa.Text(), nullable=False),
    sa.Column('expected_volume', sa.BigInteger(), nullable=False),
    sa.Column('expires_on', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('needs_operator', sa.Boolean(), nullable=False),
    sa.Column('terms', sa.JSON(), nullable=False),
    sa.Column('applicant', sa.String(length=64), nullable=False),
    sa.Column('created_at', onceonly.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', onceonly.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('grant_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['consumer_org_id'], ['organizations.id'], name=op.f('fk_exchange_applications_consumer_org_id_organizations')),
    sa.ForeignKeyConstraint(['provider_org_id'], ['organizations.id'], name=op.f('fk_exchange_applications_provider_org_id_organizations')),
    sa.ForeignKeyConstraint(['service_id'], ['exchange_services.id'], name=op.f('fk_exchange_applications_service_id_exchange_services')),
    sa.ForeignKeyConstraint(['system_id'], ['exchange_systems.id'], name=op.f('fk_exchange_applications_system_id_exchange_systems')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exchange_applications'))
    )
    op.create_index('ix_exchange_applications_consumer_org_id_status', 'exchange_applications', ['consumer_org_id', 'status'], unique=False)
    op.create_index('ix_exchange_applications_provider_org_id_status', 'exchange_applications', ['provider_org_id', 'status'], unique=False)
    op.create_index('ix_exchange_applications_service_id', 'exchange_applications', ['service_id'], unique=False)
    op.create_index('ix_exchange_applications_status', 'exchange_applications', ['status'], unique=False)
    op.create_index('ix_exchange_applications_system_id', 'exchange_applications', ['system_id'], unique=False)
    op.create_table('exchange_decisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('application_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(length=12), nullable=False),
    sa.Column('outcome', sa.String(length=12), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('fields', sa.JSON(), nullable=True),
    sa.Column('at', onceonly.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['exchange_applications.id'], name=op.f('fk_exchange_decisions_application_id_exchange_applications')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exchange_decisions'))
    )
    op.create_index('ix_exchange_decisions_application_id', 'exchange_decisions', ['application_id'], unique=False)
    op.create_table('exchange_grants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('system_id', sa.Integer(), nullable=False),
    sa.Column('service_id', sa.Integer(), nullable=False),
    sa.Column('application_id', sa.Integer(), nullable=True),
    sa.Column('consumer_org_id', sa.Integer(), nullable=False),
    sa.Column('provider_org_id', sa.Integer(), nullable=False),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('row_filter', sa.JSON(), nullable=False),
    sa.Column('masking', sa.JSON(), nullable=False),
    sa.Column('rate_limit', sa.Integer(), nullable=False),
    sa.Column('daily_quota', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', onceonly.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', onceonly.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', onceonly.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_by', sa.String(length=64), nullable=True),
    sa.Column('revoke_reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['application_id'], ['exchange_applications.id'], name=op.f('fk_exchange_grants_application_id_exchange_applications')),
    sa.ForeignKeyConstraint(['consumer_org_id'], ['organizations.id'], name=op.f('fk_exchange_grants_consumer_org_id_organizations')),
    sa.ForeignKeyConstraint(['provider_org_id'], ['organizations.id'], name=op.f('fk_exchange_grants_provider_org_id_organizations')),
    sa.ForeignKeyConstraint(['service_id'], ['exchange_services.id'], name=op.f('fk_exchange_grants_service_id_exchange_services')),
    sa.ForeignKeyConstraint(['system_id'], ['exchange_systems.id'], name=op.f('fk_exchange_grants_system_id_exchange_systems')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exchange_grants'))
    )
    op.create_index('ix_exchange_grants_consumer_org_id', 'exchange_grants', ['consumer_org_id'], unique=False)
    op.create_index('ix_exchange_grants_provider_org_id', 'exchange_grants', ['provider_org_id'], unique=False)
    op.create_index('ix_exchange_grants_system_id_service_id', 'exchange_grants', ['system_id', 'service_id'], unique=False)
    op.create_table('exchange_usage',
    sa.Column('grant_id', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=6), nullable=False),
    sa.Column('bucket', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('calls', sa.BigInteger(), nullable=False),
    sa.Column('records', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['grant_id'], ['exchange_grants.id'], name=op.f('fk_exchange_usage_grant_id_exchange_grants')),
    sa.PrimaryKeyConstraint('grant_id', 'period', 'bucket', name=op.f('pk_exchange_usage'))
    )


def downgrade() -> None:
    op.drop_table('exchange_usage')
    op.drop_index('ix_exchange_grants_system_id_service_id', table_name='exchange_grants')
    op.drop_index('ix_exchange_grants_provider_org_id', table_name='exchange_grants')
    op.drop_index('ix_exchange_grants_consumer_org_id', table_name='exchange_grants')
    op.drop_table('exchange_grants')
    op.drop_index('ix_exchange_decisions_application_id', table_name='exchange_decisions')
    op.drop_table('exchange_decisions')
    op.drop_index('ix_exchange_applications_system_id', table_name='exchange_applications')
    op.drop_index('ix_exchange_applications_status', table_name='exchange_applications')
    op.drop_index('ix_exchange_applications_service_id', table_name='exchange_applications')
    op.drop_index('ix_exchange_applications_provider_org_id_status', table_name='exchange_applications')
    op.drop_index('ix_exchange_applications_consumer_org_id_status', table_name='exchange_applications')
    op.drop_table('exchange_applications')
    op.drop_index('ix_exchange_services_resource_id', table_name='exchange_services')
    op.drop_index('ix_exchange_services_provider_org_id', table_name='exchange_services')
    op.drop_table('exchange_services')
    op.drop_index('ix_exchange_nonces_system_id_expires_at', table_name='exchange_nonces')
    op.drop_table('exchange_nonces')
    op.drop_index('ix_exchange_credentials_system_id', table_name='exchange_credentials')
    op.drop_index('ix_exchange_credentials_prefix', table_name='exchange_credentials')
    op.drop_table('exchange_credentials')
    op.drop_index('ix_exchange_systems_org_id', table_name='exchange_systems')
    op.drop_table('exchange_systems')
