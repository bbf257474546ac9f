"""open lots index: only lots with points left

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 21:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ['member_id', 'status', 'expires_at']


def upgrade() -> None:
    # Spent lots stay in the ledger forever: a draw should not scan them.
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_entries_open_lots')
        batch_op.create_index(
            'ix_ledger_entries_open_lots',
            COLUMNS,
            unique=False,
            postgresql_where=sa.text('remaining > 0'),
            sqlite_where=sa.text('remaining > 0'),
        )


def downgrade() -> None:
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_entries_open_lots')
        batch_op.create_index('ix_ledger_entries_open_lots', COLUMNS, unique=False)
