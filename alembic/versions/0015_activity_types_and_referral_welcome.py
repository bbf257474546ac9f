"""activity types: admin-defined activities that earn points, with caps, an optional segment
and tier multipliers; the built-ins `review` and `social_share` as rows; the type an ACTIVITY
entry paid; the referral welcome (points and a reward) in the program's settings

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-06 21:45:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import models.base


revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here: the built-ins as this migration seeds them (services.activity_types.BUILT_INS
# seeds them too, on databases created without migrations).
BUILT_INS = (('review', 'Review'), ('social_share', 'Social share'))


def upgrade() -> None:
    table = op.create_table(
        'activity_types',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('points', sa.Integer(), nullable=False),
        sa.Column('per_day', sa.Integer(), nullable=True),
        sa.Column('per_week', sa.Integer(), nullable=True),
        sa.Column('per_month', sa.Integer(), nullable=True),
        sa.Column('lifetime', sa.Integer(), nullable=True),
        sa.Column('segment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('tier_multiplier_applies', sa.Boolean(), nullable=False),
        sa.Column('built_in', sa.Boolean(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('created_at', models.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['segment_id'], ['segments.id'], name=op.f('fk_activity_types_segment_id_segments')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_activity_types')),
        sa.UniqueConstraint('key', name=op.f('uq_activity_types_key')),
    )
    op.create_index('ix_activity_types_segment_id', 'activity_types', ['segment_id'])
    assert table is not None
    now = datetime.now(UTC)
    op.bulk_insert(
        table,
        [
            {
                'key': key, 'name': name, 'points': 0, 'tier_multiplier_applies': False,
                'built_in': True, 'active': True, 'created_at': now,
            }
            for key, name in BUILT_INS
        ],
    )
    op.add_column(
        'program',
        sa.Column('referral_welcome_points', sa.Integer(), server_default='0', nullable=False),
    )
    op.add_column(
        'program',
        sa.Column(
            'referral_welcome_reward_id',
            sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
            nullable=True,
        ),
    )
    with op.batch_alter_table('ledger_entries') as batch:
        batch.add_column(
            sa.Column(
                'activity_type_id',
                sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                nullable=True,
            )
        )
        batch.create_foreign_key(
            op.f('fk_ledger_entries_activity_type_id_activity_types'),
            'activity_types',
            ['activity_type_id'],
            ['id'],
        )


def downgrade() -> None:
    with op.batch_alter_table('ledger_entries') as batch:
        batch.drop_constraint(
            op.f('fk_ledger_entries_activity_type_id_activity_types'), type_='foreignkey'
        )
        batch.drop_column('activity_type_id')
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+): a batch would rebuild the program table.
    op.drop_column('program', 'referral_welcome_reward_id')
    op.drop_column('program', 'referral_welcome_points')
    op.drop_index('ix_activity_types_segment_id', table_name='activity_types')
    op.drop_table('activity_types')
