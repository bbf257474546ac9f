"""leaderboards computed by the database from indexes: members' monthly and weekly points,
and the number of listed members at each score of each board

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 00:30:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

import models.base


revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here: what counted as earned when this migration was written.
QUALIFYING = (
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
    "ACTIVITY",
    "REVERSAL",
)
# Each board's (period, key column, points column) on `members`.
BOARDS = (
    ("ALL_TIME", "0", "earned_points"),
    ("MONTHLY", "month_key", "month_points"),
    ("WEEKLY", "week_key", "week_points"),
)
WATCHED = (
    "earned_points",
    "month_key",
    "month_points",
    "week_key",
    "week_points",
    "leaderboard_opt_out",
    "erased_at",
)


def _listed(row: str) -> str:
    return f"(NOT {row}.leaderboard_opt_out AND {row}.erased_at IS NULL)"


def _key(row: str, key: str) -> str:
    return key if key == "0" else f"{row}.{key}"


def _deltas(*, update: bool) -> str:
    """The member's change to each board's counts, as rows (period, period_key, points,
    delta): its old score leaves (unless the period rolled over: the old period's counts
    stay as they were), its new one arrives; only listed members with points above 0 count."""
    rows = []  # (period, key, points, delta, condition)
    for period, key, points in BOARDS:
        if update:
            same_period = '' if key == '0' else f' AND OLD.{key} = NEW.{key}'
            rows.append((f"'{period}'", _key('OLD', key), f'OLD.{points}', '-1',
                         f'{_listed("OLD")} AND OLD.{points} > 0{same_period}'))
        rows.append((f"'{period}'", _key('NEW', key), f'NEW.{points}', '1',
                     f'{_listed("NEW")} AND NEW.{points} > 0'))
    names = ('period', 'period_key', 'points', 'delta')
    selects = [
        'SELECT ' + ', '.join(
            f'{value} AS {name}' if number == 0 else value
            for value, name in zip(row[:4], names, strict=True)
        ) + f' WHERE {row[4]}'
        for number, row in enumerate(rows)
    ]
    return ' UNION ALL '.join(selects)


def _upsert(*, update: bool, target: str) -> str:
    # In key order, so that two transactions lock the rows they share in the same order.
    return (
        f"INSERT INTO leaderboard_counts {target} (period, period_key, points, members) "
        f"SELECT d.period, d.period_key, d.points, sum(d.delta) FROM ({_deltas(update=update)}) "
        "AS d GROUP BY d.period, d.period_key, d.points HAVING sum(d.delta) <> 0 "
        "ORDER BY d.period, d.period_key, d.points "
        "ON CONFLICT (period, period_key, points) DO UPDATE SET members = "
    )


def _changed(distinct: str) -> str:
    return " OR ".join(f"OLD.{column} {distinct} NEW.{column}" for column in WATCHED)


PG_UP = [
    f"""
    CREATE FUNCTION laurel_leaderboard_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_upsert(update=False, target="AS c")} c.members + EXCLUDED.members;
        RETURN NULL;
    END
    $$
    """,
    f"""
    CREATE FUNCTION laurel_leaderboard_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_upsert(update=True, target="AS c")} c.members + EXCLUDED.members;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER members_leaderboard_counts_insert AFTER INSERT ON members
        FOR EACH ROW EXECUTE FUNCTION laurel_leaderboard_counts_insert()
    """,
    f"""
    CREATE TRIGGER members_leaderboard_counts_update AFTER UPDATE OF {", ".join(WATCHED)}
        ON members FOR EACH ROW WHEN ({_changed("IS DISTINCT FROM")})
        EXECUTE FUNCTION laurel_leaderboard_counts_update()
    """,
]
PG_DOWN = [
    "DROP TRIGGER members_leaderboard_counts_update ON members",
    "DROP TRIGGER members_leaderboard_counts_insert ON members",
    "DROP FUNCTION laurel_leaderboard_counts_update()",
    "DROP FUNCTION laurel_leaderboard_counts_insert()",
]
SQLITE_UP = [
    f"""
    CREATE TRIGGER members_leaderboard_counts_insert AFTER INSERT ON members BEGIN
        {_upsert(update=False, target="")} members + excluded.members;
    END
    """,
    f"""
    CREATE TRIGGER members_leaderboard_counts_update AFTER UPDATE OF {", ".join(WATCHED)}
        ON members WHEN {_changed("IS NOT")} BEGIN
        {_upsert(update=True, target="")} members + excluded.members;
    END
    """,
]
SQLITE_DOWN = [
    "DROP TRIGGER members_leaderboard_counts_update",
    "DROP TRIGGER members_leaderboard_counts_insert",
]


def _period_keys(now: datetime) -> tuple[tuple[int, datetime, datetime], ...]:
    month = datetime(now.year, now.month, 1, tzinfo=UTC)
    next_month = (
        month.replace(year=month.year + 1, month=1)
        if month.month == 12
        else (month.replace(month=month.month + 1))
    )
    monday = now.date() - timedelta(days=now.weekday())
    week = datetime(monday.year, monday.month, monday.day, tzinfo=UTC)
    year, number, _ = now.isocalendar()
    return (
        (now.year * 100 + now.month, month, next_month),
        (year * 100 + number, week, week + timedelta(days=7)),
    )


def upgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        for column in ("month_key", "month_points", "week_key", "week_points"):
            batch_op.add_column(sa.Column(column, sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index(
            "ix_members_month_points", ["month_key", "month_points"], unique=False
        )
        batch_op.create_index("ix_members_week_points", ["week_key", "week_points"], unique=False)
    op.create_table(
        "leaderboard_counts",
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("period_key", sa.Integer(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "period", "period_key", "points", name=op.f("pk_leaderboard_counts")
        ),
    )

    # Members' points of the current month and week, as of this migration.
    kinds = ", ".join(f"'{kind}'" for kind in QUALIFYING)
    for (key, start, end), (key_column, points_column) in zip(
        _period_keys(datetime.now(UTC)),
        (("month_key", "month_points"), ("week_key", "week_points")),
        strict=True,
    ):
        op.execute(
            sa.text(
                f"UPDATE members SET {key_column} = :key, {points_column} = COALESCE(("
                "SELECT SUM(e.points) FROM ledger_entries e WHERE e.member_id = members.id"
                f" AND e.kind IN ({kinds}) AND e.status <> 'VOIDED'"
                " AND e.created_at >= :start AND e.created_at < :end), 0)"
            ).bindparams(
                sa.bindparam("key", key),
                sa.bindparam("start", start, type_=models.base.UtcDateTime()),
                sa.bindparam("end", end, type_=models.base.UtcDateTime()),
            )
        )
    for period, key, points in BOARDS:
        grouped = points if key == "0" else f"{key}, {points}"
        op.execute(
            f"INSERT INTO leaderboard_counts (period, period_key, points, members) "
            f"SELECT '{period}', {key}, {points}, count(*) FROM members AS m "
            f"WHERE {_listed('m')} AND {points} > 0 GROUP BY {grouped}"
        )
    statements = PG_UP if op.get_bind().dialect.name == "postgresql" else SQLITE_UP
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    statements = PG_DOWN if op.get_bind().dialect.name == "postgresql" else SQLITE_DOWN
    for statement in statements:
        op.execute(statement)
    op.drop_table("leaderboard_counts")
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_index("ix_members_week_points")
        batch_op.drop_index("ix_members_month_points")
        for column in ("week_points", "week_key", "month_points", "month_key"):
            batch_op.drop_column(column)
