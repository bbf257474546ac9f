"""The ledger's daily rollup (models.rollup): reading it, folding the changes PostgreSQL's
trigger appends, and rebuilding it from the ledger.

The triggers of migration 0020 keep the rollup with every write; `rebuild` computes the same
tables from scratch (the migration's backfill does too), and tests hold the two equal."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Date, Subquery, bindparam, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

from models import ActiveMembers, ActiveMembersChange, LedgerDay, LedgerDayChange
from models.base import UtcDateTime
from services.stats import ACTIVE_KINDS

# The first day of a rebuild of everything.
EPOCH = date(1970, 1, 1)


def days() -> Subquery:
    """(day, kind, credited, debited) rows whose sums per day and kind are the rollup."""
    d, c = LedgerDay, LedgerDayChange
    return union_all(
        select(d.day, d.kind, d.credited, d.debited),
        select(c.day, c.kind, c.credited, c.debited),
    ).subquery("ledger_days_all")


def active_members() -> Subquery:
    """(period, starts, members) rows whose sums per period are its active members."""
    a, c = ActiveMembers, ActiveMembersChange
    return union_all(
        select(a.period, a.starts, a.members),
        select(c.period, c.starts, c.members),
    ).subquery("active_members_all")


def week_start(day: date) -> date:
    """The Monday of `day`'s ISO week."""
    return day - timedelta(days=day.weekday())


def month_start(day: date) -> date:
    return day.replace(day=1)


_FOLD = [
    """
    WITH moved AS (DELETE FROM ledger_day_changes RETURNING day, kind, credited, debited)
    INSERT INTO ledger_days (day, kind, credited, debited)
    SELECT day, kind, sum(credited), sum(debited) FROM moved GROUP BY day, kind
    ON CONFLICT (day, kind) DO UPDATE
    SET credited = ledger_days.credited + EXCLUDED.credited,
        debited = ledger_days.debited + EXCLUDED.debited
    """,
    """
    WITH moved AS (DELETE FROM active_member_changes RETURNING period, starts, members)
    INSERT INTO active_members (period, starts, members)
    SELECT period, starts, sum(members) FROM moved GROUP BY period, starts
    ON CONFLICT (period, starts) DO UPDATE
    SET members = active_members.members + EXCLUDED.members
    """,
]


async def fold(session: AsyncSession) -> None:
    """Move PostgreSQL's appended changes into the summaries (each in one statement, so a
    reader sees them either side, never both or neither). Writers only append, so folding
    waits for none of them; changes not yet committed are left for the next fold."""
    if session.bind.dialect.name != "postgresql":
        return  # SQLite's triggers update the summaries themselves
    for statement in _FOLD:
        await session.execute(text(statement))


def _dialect_sql(dialect: str) -> tuple[str, str, str]:
    """(UTC day of `created_at`, Monday of `day`, first of `day`'s month) as SQL."""
    if dialect == "postgresql":
        return (
            "(created_at AT TIME ZONE 'UTC')::date",
            "date_trunc('week', day::timestamp)::date",
            "date_trunc('month', day::timestamp)::date",
        )
    return "date(created_at)", "date(day, '-6 days', 'weekday 1')", "date(day, 'start of month')"


async def rebuild(session: AsyncSession, since: date | None = None) -> None:
    """Compute the rollup again from the ledger, for the days from `since` (all of it when
    None), in the caller's transaction. On PostgreSQL the ledger is locked against writers
    until that transaction ends; on SQLite the first write does as much."""
    dialect = session.bind.dialect.name
    if dialect == "postgresql":
        await session.execute(text("LOCK TABLE ledger_entries IN SHARE MODE"))
    await fold(session)
    first = since or EPOCH
    day_of, week_of, month_of = _dialect_sql(dialect)
    active = ", ".join(f"'{kind.value}'" for kind in sorted(ACTIVE_KINDS))
    statements = [
        "DELETE FROM ledger_days WHERE day >= :since",
        f"""
        INSERT INTO ledger_days (day, kind, credited, debited)
        SELECT {day_of}, kind,
               sum(CASE WHEN points > 0 THEN points ELSE 0 END),
               sum(CASE WHEN points < 0 THEN points ELSE 0 END)
        FROM ledger_entries
        WHERE status <> 'VOIDED' AND created_at >= :since_at
        GROUP BY {day_of}, kind
        """,  # noqa: S608 (only the dialect's SQL is formatted in)
        "DELETE FROM member_days WHERE day >= :since",
        f"""
        INSERT INTO member_days (member_id, day)
        SELECT DISTINCT member_id, {day_of} FROM ledger_entries
        WHERE status <> 'VOIDED' AND kind IN ({active}) AND created_at >= :since_at
        """,  # noqa: S608 (only the dialect's SQL is formatted in)
        """
        DELETE FROM active_members
        WHERE (period = 'D' AND starts >= :since) OR (period = 'W' AND starts >= :week)
           OR (period = 'M' AND starts >= :month)
        """,
        """
        INSERT INTO active_members (period, starts, members)
        SELECT 'D', day, count(*) FROM member_days WHERE day >= :since GROUP BY day
        """,
        f"""
        INSERT INTO active_members (period, starts, members)
        SELECT 'W', {week_of}, count(DISTINCT member_id) FROM member_days
        WHERE day >= :week GROUP BY {week_of}
        """,  # noqa: S608 (only the dialect's SQL is formatted in)
        f"""
        INSERT INTO active_members (period, starts, members)
        SELECT 'M', {month_of}, count(DISTINCT member_id) FROM member_days
        WHERE day >= :month GROUP BY {month_of}
        """,  # noqa: S608 (only the dialect's SQL is formatted in)
    ]
    values = {
        "since": first,
        "since_at": datetime(first.year, first.month, first.day, tzinfo=UTC),
        "week": week_start(first),
        "month": month_start(first),
    }
    types: dict[str, TypeEngine[Any]] = {
        "since": Date(),
        "since_at": UtcDateTime(),
        "week": Date(),
        "month": Date(),
    }
    for statement in statements:
        named = [name for name in values if re.search(rf":{name}\b", statement)]
        sql = text(statement).bindparams(*(bindparam(name, type_=types[name]) for name in named))
        await session.execute(sql, {name: values[name] for name in named})
