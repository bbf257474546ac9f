"""running the program: member status, attributes, leaderboard opt-out, erasure, member search,
retired tiers, deactivated partners, API key use, the audit trail

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 18:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import models.base


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE_TIER = sa.text('deleted_at IS NULL')

# Member search on PostgreSQL (services/member_search.py reads it; the text must stay as
# search_text() there builds it). The searchable fields live in their own table, kept by a
# trigger that fires only when one of them changes: every purchase rewrites its member's row,
# and a trigram index on `members` would be rewritten with it. pg_trgm's GIN index serves
# LIKE '%text%' (prefix and substring alike), which a B-tree cannot. The fields are joined by
# a unit separator (chr(31)), which searches never contain, so no match spans two fields.
SEARCH_TEXT = (
    "lower(NEW.email) || chr(31) || lower(NEW.display_name) || chr(31)"
    " || lower(coalesce(NEW.external_id, '')) || chr(31) || lower(NEW.referral_code)"
)
PG_SEARCH_UP = [
    'CREATE EXTENSION IF NOT EXISTS pg_trgm',
    """
    CREATE TABLE member_search (
        member_id bigint PRIMARY KEY REFERENCES members (id) ON DELETE CASCADE,
        text text NOT NULL
    )
    """,
    'CREATE INDEX ix_member_search_text ON member_search USING gin (text gin_trgm_ops)',
    f"""
    CREATE FUNCTION laurel_member_search() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO member_search (member_id, text) VALUES (NEW.id, {SEARCH_TEXT})
        ON CONFLICT (member_id) DO UPDATE SET text = EXCLUDED.text;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER members_search AFTER INSERT OR UPDATE OF email, display_name, external_id,
        referral_code ON members FOR EACH ROW EXECUTE FUNCTION laurel_member_search()
    """,
    f"""
    INSERT INTO member_search (member_id, text)
    SELECT NEW.id, {SEARCH_TEXT} FROM members AS NEW
    """,
]
PG_SEARCH_DOWN = [
    'DROP TRIGGER members_search ON members',
    'DROP FUNCTION laurel_member_search()',
    'DROP TABLE member_search',
]


def upgrade() -> None:
    op.create_table(
        'audit_entries',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('at', models.base.UtcDateTime(timezone=True), nullable=False),
        sa.Column('actor_key_id', sa.BigInteger(), nullable=True),
        sa.Column('actor_name', sa.String(length=200), nullable=True),
        sa.Column('actor_role', sa.String(length=10), nullable=True),
        sa.Column('operation', sa.String(length=100), nullable=False),
        sa.Column('target_id', sa.String(length=100), nullable=True),
        sa.Column('before', sa.JSON(), nullable=True),
        sa.Column('after', sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_entries')),
    )
    op.create_index('ix_audit_entries_actor_key_id_id', 'audit_entries', ['actor_key_id', 'id'])
    op.create_index('ix_audit_entries_at', 'audit_entries', ['at'])
    op.create_index('ix_audit_entries_target_id_id', 'audit_entries', ['target_id', 'id'])

    with op.batch_alter_table('api_keys') as batch:
        batch.add_column(
            sa.Column('last_used_at', models.base.UtcDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table('members') as batch:
        batch.add_column(
            sa.Column(
                'status',
                sa.Enum('ACTIVE', 'SUSPENDED', name='memberstatus', native_enum=False, length=10),
                server_default='ACTIVE',
                nullable=False,
            )
        )
        batch.add_column(sa.Column('status_reason', sa.String(length=500), nullable=True))
        batch.add_column(
            sa.Column('status_changed_at', models.base.UtcDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column('attributes', sa.JSON(), server_default='{}', nullable=False))
        batch.add_column(
            sa.Column('leaderboard_opt_out', sa.Boolean(), server_default='false', nullable=False)
        )
        batch.add_column(
            sa.Column('erased_at', models.base.UtcDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column('tier_floor_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch.create_foreign_key(
            'fk_members_tier_floor_id_tiers', 'tiers', ['tier_floor_id'], ['id']
        )
        batch.create_index('ix_members_joined_at_id', ['joined_at', 'id'])
        batch.create_index(
            'ix_members_unlisted', ['id'],
            postgresql_where=sa.text('leaderboard_opt_out OR erased_at IS NOT NULL'),
            sqlite_where=sa.text('leaderboard_opt_out OR erased_at IS NOT NULL'),
        )
        batch.create_index(
            'ix_members_erased_at', ['erased_at'],
            postgresql_where=sa.text('erased_at IS NOT NULL'),
            sqlite_where=sa.text('erased_at IS NOT NULL'),
        )
    with op.batch_alter_table('partners') as batch:
        batch.add_column(
            sa.Column('deactivated_at', models.base.UtcDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table('tiers') as batch:
        batch.add_column(
            sa.Column('deleted_at', models.base.UtcDateTime(timezone=True), nullable=True)
        )
        batch.drop_constraint('uq_tiers_name', type_='unique')
        batch.drop_constraint('uq_tiers_threshold', type_='unique')
    # Retired tiers keep their rows; only live ones must be unique.
    op.create_index(
        'uq_tiers_live_name', 'tiers', ['name'], unique=True,
        postgresql_where=LIVE_TIER, sqlite_where=LIVE_TIER,
    )
    op.create_index(
        'uq_tiers_live_threshold', 'tiers', ['threshold'], unique=True,
        postgresql_where=LIVE_TIER, sqlite_where=LIVE_TIER,
    )
    if op.get_bind().dialect.name == 'postgresql':
        for statement in PG_SEARCH_UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for statement in PG_SEARCH_DOWN:
            op.execute(statement)
    op.drop_index('uq_tiers_live_threshold', table_name='tiers')
    op.drop_index('uq_tiers_live_name', table_name='tiers')
    with op.batch_alter_table('tiers') as batch:
        batch.create_unique_constraint('uq_tiers_threshold', ['threshold'])
        batch.create_unique_constraint('uq_tiers_name', ['name'])
        batch.drop_column('deleted_at')
    with op.batch_alter_table('partners') as batch:
        batch.drop_column('deactivated_at')
    with op.batch_alter_table('members') as batch:
        batch.drop_index('ix_members_joined_at_id')
        batch.drop_index('ix_members_erased_at')
        batch.drop_index('ix_members_unlisted')
        batch.drop_constraint('fk_members_tier_floor_id_tiers', type_='foreignkey')
        batch.drop_column('tier_floor_id')
        for column in (
            'erased_at', 'leaderboard_opt_out', 'attributes', 'status_changed_at',
            'status_reason', 'status',
        ):
            batch.drop_column(column)
    with op.batch_alter_table('api_keys') as batch:
        batch.drop_column('last_used_at')
    op.drop_index('ix_audit_entries_target_id_id', table_name='audit_entries')
    op.drop_index('ix_audit_entries_at', table_name='audit_entries')
    op.drop_index('ix_audit_entries_actor_key_id_id', table_name='audit_entries')
    op.drop_table('audit_entries')
