"""segments: named sets of members defined by a rule, members' last purchase, purchases by
when they happened; on PostgreSQL the ledger's window index covers what program figures and
charts sum

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 20:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base


revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'segments',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('rule', sa.JSON(), nullable=False),
        sa.Column('created_at', models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', models.base.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_segments')),
        sa.UniqueConstraint('name', name=op.f('uq_segments_name')),
    )
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_ledger_entries_created_at', table_name='ledger_entries')
        op.create_index(
            'ix_ledger_entries_created_at', 'ledger_entries', ['created_at'],
            postgresql_include=['kind', 'status', 'points', 'member_id'],
        )
    op.create_index(
        'ix_purchases_occurred_at', 'purchases', ['occurred_at'],
        postgresql_include=['member_id', 'amount', 'refunded_amount'],
    )
    with op.batch_alter_table('members') as batch:
        batch.add_column(
            sa.Column('last_purchase_at', models.base.UtcDateTime(timezone=True), nullable=True)
        )
    op.execute(
        'UPDATE members SET last_purchase_at = '
        '(SELECT max(occurred_at) FROM purchases WHERE purchases.member_id = members.id)'
    )


def downgrade() -> None:
    with op.batch_alter_table('members') as batch:
        batch.drop_column('last_purchase_at')
    op.drop_index('ix_purchases_occurred_at', table_name='purchases')
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_ledger_entries_created_at', table_name='ledger_entries')
        op.create_index('ix_ledger_entries_created_at', 'ledger_entries', ['created_at'])
    op.drop_table('segments')
