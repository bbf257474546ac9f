"""promotion experiments: the share of eligible members held out as control

Revision ID: 0017
Revises: 0013
Create Date: 2026-12-06 21:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('promotions') as batch:
        batch.add_column(sa.Column('experiment_control_share', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('promotions') as batch:
        batch.drop_column('experiment_control_share')
