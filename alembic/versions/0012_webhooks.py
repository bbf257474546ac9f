"""webhooks: endpoints, the events sent and their deliveries; member events a dispatcher has
turned into them; expiry reminders

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 19:28:54.107361
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('webhook_endpoints',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=True),
    sa.Column('event_types', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('disabled_reason', sa.String(length=500), nullable=True),
    sa.Column('partner_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('secret', sa.String(length=100), nullable=False),
    sa.Column('previous_secret', sa.String(length=100), nullable=True),
    sa.Column('previous_secret_until', models.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('failing_since', models.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', models.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', models.base.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_webhook_endpoints_partner_id_partners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoints'))
    )
    op.create_index(op.f('ix_webhook_endpoints_partner_id'), 'webhook_endpoints', ['partner_id'], unique=False)
    op.create_table('webhook_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('audience', sa.String(length=20), nullable=False),
    sa.Column('partner_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('type', sa.Enum('MEMBER_ENROLLED', 'MEMBER_UPDATED', 'MEMBER_ERASED', 'POINTS_EARNED', 'POINTS_REVERSED', 'POINTS_ACTIVATED', 'POINTS_EXPIRING', 'POINTS_EXPIRED', 'TIER_CHANGED', 'REWARD_REDEEMED', 'REDEMPTION_USED', 'REDEMPTION_CANCELLED', 'CHALLENGE_COMPLETED', 'BADGE_AWARDED', 'REFERRAL_COMPLETED', name='webhookeventtype', native_enum=False, length=30), nullable=False),
    sa.Column('member_id', sa.BigInteger(), nullable=False),
    sa.Column('occurred_at', models.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['member_event_id'], ['member_events.id'], name=op.f('fk_webhook_events_member_event_id_member_events')),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_webhook_events_partner_id_partners')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_events')),
    sa.UniqueConstraint('member_event_id', 'audience', name=op.f('uq_webhook_events_member_event_id_audience'))
    )
    op.create_index('ix_webhook_events_member_id_id', 'webhook_events', ['member_id', 'id'], unique=False)
    op.create_table('webhook_deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('endpoint_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Enum('PENDING', 'SUCCEEDED', 'FAILED', name='deliverystatus', native_enum=False, length=10), nullable=False),
    sa.Column('attempts', sa.JSON(), nullable=False),
    sa.Column('next_attempt_at', models.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('leased_until', models.base.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', models.base.UtcDateTime(timezone=True), nullable=False),
    sa.Column('completed_at', models.base.UtcDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'], name=op.f('fk_webhook_deliveries_endpoint_id_webhook_endpoints')),
    sa.ForeignKeyConstraint(['event_id'], ['webhook_events.id'], name=op.f('fk_webhook_deliveries_event_id_webhook_events')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries'))
    )
    op.create_index('ix_webhook_deliveries_due', 'webhook_deliveries', ['next_attempt_at'], unique=False, postgresql_where=sa.text("status = 'PENDING'"), sqlite_where=sa.text("status = 'PENDING'"))
    op.create_index('ix_webhook_deliveries_endpoint_id_id', 'webhook_deliveries', ['endpoint_id', 'id'], unique=False)
    op.create_index('ix_webhook_deliveries_endpoint_due', 'webhook_deliveries', ['endpoint_id', 'next_attempt_at'], unique=False, postgresql_where=sa.text("status = 'PENDING'"), sqlite_where=sa.text("status = 'PENDING'"))
    op.create_index('ix_webhook_deliveries_event_id', 'webhook_deliveries', ['event_id'], unique=False)
    op.create_index('ix_webhook_deliveries_pending_order', 'webhook_deliveries', ['endpoint_id', 'member_id', 'event_id'], unique=False, postgresql_where=sa.text("status = 'PENDING'"), sqlite_where=sa.text("status = 'PENDING'"))
    # Events from before webhooks existed have nothing to dispatch: they read as dispatched
    # (a column default, so no row is rewritten on PostgreSQL), new ones as not yet.
    op.add_column('member_events', sa.Column('dispatched', sa.Boolean(), server_default=sa.true(), nullable=False))
    with op.batch_alter_table('member_events') as batch:
        batch.alter_column('dispatched', server_default='false')
    op.create_index('ix_member_events_undispatched', 'member_events', ['id'], unique=False, postgresql_where=sa.text('NOT dispatched'), sqlite_where=sa.text('NOT dispatched'))
    op.add_column('program', sa.Column('expiry_reminder_days', sa.Integer(), nullable=True))
    op.create_index('ix_ledger_entries_expiring', 'ledger_entries', ['expires_at'], unique=False, postgresql_where=sa.text('remaining > 0 AND expires_at IS NOT NULL'), sqlite_where=sa.text('remaining > 0 AND expires_at IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_ledger_entries_expiring', table_name='ledger_entries')
    op.drop_column('program', 'expiry_reminder_days')
    op.drop_index('ix_member_events_undispatched', table_name='member_events', postgresql_where=sa.text('NOT dispatched'), sqlite_where=sa.text('NOT dispatched'))
    op.drop_column('member_events', 'dispatched')
    op.drop_index('ix_webhook_deliveries_pending_order', table_name='webhook_deliveries', postgresql_where=sa.text("status = 'PENDING'"), sqlite_where=sa.text("status = 'PENDING'"))
    op.drop_index('ix_webhook_deliveries_event_id', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_endpoint_id_id', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_endpoint_due', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_due', table_name='webhook_deliveries', postgresql_where=sa.text("status = 'PENDING'"), sqlite_where=sa.text("status = 'PENDING'"))
    op.drop_table('webhook_deliveries')
    op.drop_index('ix_webhook_events_member_id_id', table_name='webhook_events')
    op.drop_table('webhook_events')
    op.drop_index(op.f('ix_webhook_endpoints_partner_id'), table_name='webhook_endpoints')
    op.drop_table('webhook_endpoints')
