"""targeting: promotions, rewards and challenges may name a segment; rewards may open early
to a tier or a segment (VIP early access)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 21:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base


revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    for table in ('promotions', 'rewards', 'challenges'):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('segment_id', _id(), nullable=True))
            batch.create_foreign_key(
                op.f(f'fk_{table}_segment_id_segments'), 'segments', ['segment_id'], ['id']
            )
    with op.batch_alter_table('rewards') as batch:
        batch.add_column(
            sa.Column('early_access_starts_at', models.base.UtcDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column('early_access_tier_id', _id(), nullable=True))
        batch.add_column(sa.Column('early_access_segment_id', _id(), nullable=True))
        batch.create_foreign_key(
            op.f('fk_rewards_early_access_tier_id_tiers'), 'tiers', ['early_access_tier_id'], ['id']
        )
        batch.create_foreign_key(
            op.f('fk_rewards_early_access_segment_id_segments'),
            'segments',
            ['early_access_segment_id'],
            ['id'],
        )


def downgrade() -> None:
    with op.batch_alter_table('rewards') as batch:
        batch.drop_constraint(op.f('fk_rewards_early_access_segment_id_segments'), type_='foreignkey')
        batch.drop_constraint(op.f('fk_rewards_early_access_tier_id_tiers'), type_='foreignkey')
        batch.drop_column('early_access_segment_id')
        batch.drop_column('early_access_tier_id')
        batch.drop_column('early_access_starts_at')
    for table in ('challenges', 'rewards', 'promotions'):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f'fk_{table}_segment_id_segments'), type_='foreignkey')
            batch.drop_column('segment_id')
