"""earning rules, currency rates, and purchases' currency and lines (what each line earned)

Revision ID: 0016
Revises: 0013
Create Date: 2026-12-06 21:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base


revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'earning_rules',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column(
            'kind',
            sa.Enum(
                'CATEGORY_MULTIPLIER', 'SKU_POINTS_PER_UNIT', 'EXCLUDE', 'FIRST_PURCHASE_BONUS',
                'MINIMUM_ORDER_BONUS', name='earningrulekind', native_enum=False, length=30,
            ),
            nullable=False,
        ),
        sa.Column('match', sa.JSON(), nullable=True),
        sa.Column('multiplier', sa.Numeric(precision=8, scale=4), nullable=True),
        sa.Column('points', sa.Integer(), nullable=True),
        sa.Column('minimum_amount', sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column('segment_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
        sa.Column('starts_at', models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column('ends_at', models.base.UtcDateTime(timezone=True), nullable=True),
        sa.Column('created_at', models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', models.base.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['segment_id'], ['segments.id'], name=op.f('fk_earning_rules_segment_id_segments')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_earning_rules')),
    )
    op.create_index(
        op.f('ix_earning_rules_segment_id'), 'earning_rules', ['segment_id'], unique=False
    )
    op.create_table(
        'currency_rates',
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('rate', sa.Numeric(precision=18, scale=8), nullable=False),
        sa.Column('updated_at', models.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('currency', name=op.f('pk_currency_rates')),
    )
    with op.batch_alter_table('purchases') as batch:
        batch.add_column(sa.Column('currency', sa.String(length=3), nullable=True))
        batch.add_column(
            sa.Column('currency_rate', sa.Numeric(precision=18, scale=8), nullable=True)
        )
        batch.add_column(sa.Column('lines', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('purchases') as batch:
        batch.drop_column('lines')
        batch.drop_column('currency_rate')
        batch.drop_column('currency')
    op.drop_table('currency_rates')
    op.drop_index(op.f('ix_earning_rules_segment_id'), table_name='earning_rules')
    op.drop_table('earning_rules')
