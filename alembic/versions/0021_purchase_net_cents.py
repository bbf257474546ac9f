"""purchases keep their amount less refunds in cents (`net_cents`, generated), and an index by
member and time that carries it: segments' purchase windows count a million members as one
streaming pass in member order

`memberCount` of "spent >= 100 in 90 days" on 1,000,000 members hashed 2.2 million numeric
amounts into 800,000 members (1.3-1.5 s). Summed as integers from an index in member order it
is a merge with `members` and no hash at all (bench.segments). The new index replaces
`ix_purchases_member_id`, whose leading column it shares; `ix_purchases_occurred_at` (small
windows) carries the cents instead of the two amounts.

On PostgreSQL adding a stored column rewrites `purchases`, which clears its visibility map:
until a VACUUM, index-only scans read the table too. Run `VACUUM (ANALYZE) purchases` after
upgrading a large database (autovacuum may not come by soon, as nothing was deleted).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# models.ledger.NET_CENTS as of this revision: exact on PostgreSQL (numeric), rounded on
# SQLite (whose numbers are floating point).
NET_CENTS = "CAST(ROUND((amount - refunded_amount) * 100) AS BIGINT)"


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    # PostgreSQL stores a generated column (a table rewrite); SQLite can only add a virtual
    # one, computed when read.
    op.add_column(
        "purchases",
        sa.Column("net_cents", sa.BigInteger(), sa.Computed(NET_CENTS, persisted=postgresql)),
    )
    op.drop_index("ix_purchases_occurred_at", table_name="purchases")
    op.create_index(
        "ix_purchases_occurred_at",
        "purchases",
        ["occurred_at"],
        postgresql_include=["member_id", "net_cents"],
    )
    op.create_index(
        "ix_purchases_member_occurred",
        "purchases",
        ["member_id", "occurred_at"],
        postgresql_include=["net_cents"],
    )
    op.drop_index("ix_purchases_member_id", table_name="purchases")


def downgrade() -> None:
    op.create_index("ix_purchases_member_id", "purchases", ["member_id"])
    op.drop_index("ix_purchases_member_occurred", table_name="purchases")
    op.drop_index("ix_purchases_occurred_at", table_name="purchases")
    op.create_index(
        "ix_purchases_occurred_at",
        "purchases",
        ["occurred_at"],
        postgresql_include=["member_id", "amount", "refunded_amount"],
    )
    with op.batch_alter_table("purchases") as batch:
        batch.drop_column("net_cents")
