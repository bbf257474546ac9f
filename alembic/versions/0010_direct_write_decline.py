"""direct writes: a function that declines (rolls back) a single-statement write

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 11:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A direct path's write is one statement in autocommit (services/direct): when it finds, part
# way through, that it must not go on (the member changed since it was read), it calls this,
# and the error rolls the whole statement back. VOLATILE so the planner never calls it
# ahead of time. PostgreSQL only: SQLite has no direct paths.
UPGRADE = """
CREATE FUNCTION laurel_decline(reason text) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'laurel direct write declined: %', reason USING ERRCODE = 'LD001';
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute(UPGRADE)


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute('DROP FUNCTION laurel_decline(text)')
