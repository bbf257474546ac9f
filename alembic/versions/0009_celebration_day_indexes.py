"""celebration days: members by the month and day of their birthday and of their enrolment

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 23:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The sweep looks members up by these expressions (services/celebrations.py compiles them, and
# they must stay identical): without an index it read every member row each sweep. PostgreSQL
# only; the embedded SQLite database is small.
INDEXES = {
    'ix_members_birthday_month_day': (
        'CAST(EXTRACT(MONTH FROM birthday) * 100 + EXTRACT(DAY FROM birthday) AS INTEGER)'
    ),
    'ix_members_joined_month_day': (
        "CAST(EXTRACT(MONTH FROM (joined_at AT TIME ZONE 'UTC')) * 100"
        " + EXTRACT(DAY FROM (joined_at AT TIME ZONE 'UTC')) AS INTEGER)"
    ),
}


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for name, expression in INDEXES.items():
        op.execute(f'CREATE INDEX {name} ON members (({expression}))')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for name in INDEXES:
        op.execute(f'DROP INDEX {name}')
