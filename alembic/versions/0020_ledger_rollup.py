"""ledger rollup: the ledger summed per UTC day and kind, and members active per day, week and
month, kept by triggers on ledger_entries, for the admin charts (services.timeline)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# services.stats.ACTIVE_KINDS as of this revision: the earning kinds and REDEMPTION. A later
# change of those kinds needs a migration that replaces the triggers (and rebuilds).
ACTIVE = (
    "'ACTIVITY', 'ANNIVERSARY', 'BIRTHDAY', 'CHALLENGE', 'PARTNER', 'PROMOTION', 'PURCHASE',"
    " 'REDEMPTION', 'REFERRAL', 'REVIEW', 'SIGNUP', 'SOCIAL_SHARE'"
)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
KIND = sa.Enum(
    "PURCHASE",
    "SIGNUP",
    "REFERRAL",
    "REVIEW",
    "SOCIAL_SHARE",
    "BIRTHDAY",
    "ANNIVERSARY",
    "CHALLENGE",
    "PROMOTION",
    "PARTNER",
    "ADJUSTMENT",
    "REDEMPTION",
    "REVERSAL",
    "EXPIRATION",
    "ACTIVITY",
    name="entrykind",
    native_enum=False,
    length=20,
)

# PostgreSQL: one statement-level trigger, set-based over the statement's new entries (a bulk
# insert costs one aggregate, not a call per row). It appends changes instead of updating the
# summaries, so concurrent purchases never queue on a summary row. The statements of one WITH
# share a snapshot: `member_days` read in the last part is as it was before `fresh` added to
# it, so a member is new in a week or month exactly when it had no day there before. (Writes
# of one member are serialized by its row lock, which every writer takes first.)
PG_UP = [
    f"""
    CREATE FUNCTION laurel_ledger_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO ledger_day_changes (day, kind, credited, debited)
        SELECT (created_at AT TIME ZONE 'UTC')::date, kind,
               sum(greatest(points, 0)), sum(least(points, 0))
        FROM added WHERE status <> 'VOIDED'
        GROUP BY 1, 2;
        WITH fresh AS (
            INSERT INTO member_days (member_id, day)
            SELECT DISTINCT member_id, (created_at AT TIME ZONE 'UTC')::date FROM added
            WHERE status <> 'VOIDED' AND kind IN ({ACTIVE})
            ON CONFLICT DO NOTHING
            RETURNING member_id, day
        ), periods AS (
            SELECT DISTINCT 'W' AS period, member_id,
                   date_trunc('week', day::timestamp)::date AS starts, 7 AS days
            FROM fresh
            UNION ALL
            SELECT DISTINCT 'M', member_id, date_trunc('month', day::timestamp)::date,
                   ((date_trunc('month', day::timestamp) + interval '1 month')::date
                    - date_trunc('month', day::timestamp)::date)
            FROM fresh
        )
        INSERT INTO active_member_changes (period, starts, members)
        SELECT 'D', day, count(*) FROM fresh GROUP BY day
        UNION ALL
        SELECT p.period, p.starts, count(*) FROM periods AS p
        WHERE NOT EXISTS (
            SELECT FROM member_days AS d
            WHERE d.member_id = p.member_id AND d.day >= p.starts AND d.day < p.starts + p.days
        )
        GROUP BY p.period, p.starts;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER ledger_entries_rollup AFTER INSERT ON ledger_entries
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION laurel_ledger_rollup()
    """,
]
PG_DOWN = [
    "DROP TRIGGER ledger_entries_rollup ON ledger_entries",
    "DROP FUNCTION laurel_ledger_rollup()",
]

# SQLite: a trigger per row (SQLite has no other kind), updating the summaries directly (one
# writer at a time, so no row is hot). Periods the member was not active in yet are counted
# before its day is noted.
SQLITE_UP = [
    f"""
    CREATE TRIGGER ledger_entries_rollup AFTER INSERT ON ledger_entries
    WHEN NEW.status <> 'VOIDED'
    BEGIN
        INSERT INTO ledger_days (day, kind, credited, debited)
        VALUES (date(NEW.created_at), NEW.kind, max(NEW.points, 0), min(NEW.points, 0))
        ON CONFLICT (day, kind) DO UPDATE
        SET credited = credited + excluded.credited, debited = debited + excluded.debited;
        INSERT INTO active_members (period, starts, members)
        SELECT p.period, p.starts, 1
        FROM (
            SELECT 'D' AS period, date(NEW.created_at) AS starts,
                   date(NEW.created_at, '+1 day') AS ends
            UNION ALL
            SELECT 'W', date(NEW.created_at, '-6 days', 'weekday 1'),
                   date(NEW.created_at, '-6 days', 'weekday 1', '+7 days')
            UNION ALL
            SELECT 'M', date(NEW.created_at, 'start of month'),
                   date(NEW.created_at, 'start of month', '+1 month')
        ) AS p
        WHERE NEW.kind IN ({ACTIVE}) AND NOT EXISTS (
            SELECT 1 FROM member_days AS d
            WHERE d.member_id = NEW.member_id AND d.day >= p.starts AND d.day < p.ends
        )
        ON CONFLICT (period, starts) DO UPDATE SET members = members + 1;
        INSERT OR IGNORE INTO member_days (member_id, day)
        SELECT NEW.member_id, date(NEW.created_at) WHERE NEW.kind IN ({ACTIVE});
    END
    """,
]
SQLITE_DOWN = ["DROP TRIGGER ledger_entries_rollup"]


def _backfill(dialect: str) -> list[str]:
    """The rollup of the ledger as it is (services.rollup.rebuild computes the same)."""
    if dialect == "postgresql":
        day = "(created_at AT TIME ZONE 'UTC')::date"
        week = "date_trunc('week', day::timestamp)::date"
        month = "date_trunc('month', day::timestamp)::date"
    else:
        day = "date(created_at)"
        week = "date(day, '-6 days', 'weekday 1')"
        month = "date(day, 'start of month')"
    return [
        f"""
        INSERT INTO ledger_days (day, kind, credited, debited)
        SELECT {day}, kind, sum(CASE WHEN points > 0 THEN points ELSE 0 END),
               sum(CASE WHEN points < 0 THEN points ELSE 0 END)
        FROM ledger_entries WHERE status <> 'VOIDED' GROUP BY {day}, kind
        """,
        f"""
        INSERT INTO member_days (member_id, day)
        SELECT DISTINCT member_id, {day} FROM ledger_entries
        WHERE status <> 'VOIDED' AND kind IN ({ACTIVE})
        """,
        f"""
        INSERT INTO active_members (period, starts, members)
        SELECT 'D', day, count(*) FROM member_days GROUP BY day
        UNION ALL
        SELECT 'W', {week}, count(DISTINCT member_id) FROM member_days GROUP BY {week}
        UNION ALL
        SELECT 'M', {month}, count(DISTINCT member_id) FROM member_days GROUP BY {month}
        """,
    ]


def upgrade() -> None:
    op.create_table(
        "ledger_days",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", KIND, nullable=False),
        sa.Column("credited", sa.BigInteger(), nullable=False),
        sa.Column("debited", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "kind", name=op.f("pk_ledger_days")),
    )
    op.create_table(
        "ledger_day_changes",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", KIND, nullable=False),
        sa.Column("credited", sa.BigInteger(), nullable=False),
        sa.Column("debited", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_day_changes")),
    )
    op.create_table(
        "member_days",
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("member_id", "day", name=op.f("pk_member_days")),
    )
    op.create_table(
        "active_members",
        sa.Column("period", sa.String(length=1), nullable=False),
        sa.Column("starts", sa.Date(), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("period", "starts", name=op.f("pk_active_members")),
    )
    op.create_table(
        "active_member_changes",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("period", sa.String(length=1), nullable=False),
        sa.Column("starts", sa.Date(), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_active_member_changes")),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("LOCK TABLE ledger_entries IN SHARE MODE")
    for statement in _backfill(dialect):
        op.execute(statement)
    # After the backfill: the day index is built once, not row by row.
    op.create_index("ix_member_days_day", "member_days", ["day", "member_id"])
    for statement in PG_UP if dialect == "postgresql" else SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in PG_DOWN if dialect == "postgresql" else SQLITE_DOWN:
        op.execute(statement)
    op.drop_index("ix_member_days_day", table_name="member_days")
    for table in (
        "active_member_changes",
        "active_members",
        "member_days",
        "ledger_day_changes",
        "ledger_days",
    ):
        op.drop_table(table)
