"""Leaderboards computed by the database, in SQL that runs on PostgreSQL and SQLite, each read
an index range rather than an aggregation.

A member's leaderboard points in a period are the sum of its ledger entries of the qualifying
kinds (the earning kinds, and REVERSAL entries counting against them) that are not VOIDED and
were created inside the period. `ledger.entries.apply_posting` keeps them on the member's row
with every entry (`earned_points`; `month_points` / `week_points` under the period's key), and
triggers keep `leaderboard_counts` (listed members per score) from those columns. Members with
more than zero points are ranked.

Only *listed* members appear on a board or count in anyone's rank: a member that opted out of
the leaderboards, or was erased, is on none. An opted-out member still has a standing of its
own (where it would rank among the listed members); an erased one has none. `unlisted()` and
`keeps_standing()` are those two rules, and every query here (and so Redis, which is fed from
them) goes through them (the counts' triggers too, in migration 0019).
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal_column,
    not_,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from models import LeaderboardCount, LedgerEntry, Member
from services.direct.statements import AsyncpgStatement, for_asyncpg
from services.direct.writer import DirectWriter
from services.leaderboards.periods import Board, Period, Standing, period_key, period_start


def unlisted() -> ColumnElement[bool]:
    """The member is on no board and in nobody's rank: it opted out, or was erased. (Written
    as a partial index on `members (id)` would be, so that one can serve it.)"""
    return or_(Member.leaderboard_opt_out, Member.erased_at.is_not(None))


def listed() -> ColumnElement[bool]:
    """The member appears on the boards."""
    return not_(unlisted())


def keeps_standing() -> ColumnElement[bool]:
    """The member has a standing of its own (its `rank`): listed or opted out, not erased."""
    return Member.erased_at.is_(None)


def _score(
    period: Period, key: ColumnElement[int] | int
) -> tuple[InstrumentedAttribute[int], list[ColumnElement[bool]]]:
    """A member's points in the period of `key` (`periods.period_key`), and the condition that
    they are of that period: the members' cached scores, kept by `ledger.entries.apply_posting`
    with every entry (all time: `earned_points`; a month or week: its points when its key is
    the period's, else none)."""
    if period is Period.MONTHLY:
        return Member.month_points, [Member.month_key == key]
    if period is Period.WEEKLY:
        return Member.week_points, [Member.week_key == key]
    return Member.earned_points, []


@functools.cache
def _board_statement(period: Period, mine: bool) -> Select[Any]:
    """`board_from_database`'s statement, built once: its parameters are bound per read
    (`period_key`, `first`, `member_id`), so SQLAlchemy's cache key for it is computed once
    too (a new statement per read cost more CPU than the database spent answering it)."""
    key = bindparam("period_key", type_=Integer)
    points, of_period = _score(period, key)
    counted = [LeaderboardCount.period == period.value, LeaderboardCount.period_key == key]
    top = (
        select(Member.id, Member.display_name, points.label("points"))
        .where(*of_period, points > 0, listed())
        .order_by(points.desc(), Member.id)
        .limit(bindparam("first", type_=Integer))
        .subquery("top")
    )
    no_int = cast(null(), BigInteger)
    parts = [
        select(
            literal_column("0").label("part"),
            top.c.id.label("member_id"),
            top.c.display_name,
            top.c.points,
            no_int.label("above"),
        )
    ]
    if mine:
        above = (
            select(func.coalesce(func.sum(LeaderboardCount.members), 0))
            .where(*counted, LeaderboardCount.points > points)
            .scalar_subquery()
        )
        member_id = bindparam("member_id", type_=BigInteger)
        parts.append(
            select(literal_column("1"), Member.id, Member.display_name, points, above).where(
                Member.id == member_id, *of_period, points > 0, keeps_standing()
            )
        )
    total = select(func.coalesce(func.sum(LeaderboardCount.members), 0)).where(*counted)
    parts.append(
        select(
            literal_column("2"),
            no_int,
            cast(null(), String),
            no_int,
            total.scalar_subquery(),
        )
    )
    everything = union_all(*parts).subquery("board")
    return select(everything).order_by(
        everything.c.part, everything.c.points.desc(), everything.c.member_id
    )


async def board_from_database(
    session: AsyncSession,
    period: Period,
    now: datetime,
    *,
    first: int,
    member_id: int | None,
) -> Board:
    """The top `first` of the board, `member_id`'s own standing and the number ranked, in one
    statement, each part an index range: the top from the board's index on `members` (listed
    members by points descending, then id); my points from my row; my rank as 1 + the listed
    members with more points and the total, both summed over `leaderboard_counts` (one row a
    distinct score, not one a member). My own standing is there when I opted out too (where
    I would rank), not when I was erased.

    Within the top, a rank is 1 + the position of the first entry with the same points: the
    list starts at the top, so that is the number of members with more points."""
    parameters = _board_parameters(period, now, first=first, member_id=member_id)
    statement = _board_statement(period, member_id is not None)
    return _board(period, (await session.execute(statement, parameters)).all())


async def board_direct(
    direct: DirectWriter,
    period: Period,
    now: datetime,
    *,
    first: int,
    member_id: int | None,
) -> Board:
    """`board_from_database` on PostgreSQL straight on asyncpg: the same statement, compiled
    to SQL once. Through a session, SQLAlchemy's execution and result machinery cost about
    four times what asyncpg spends on this statement (~1.5 ms of CPU against ~0.4)."""
    parameters = _board_parameters(period, now, first=first, member_id=member_id)
    compiled = _board_sql(period, member_id is not None)
    return _board(period, await direct.read_rows(compiled.sql, *compiled.arguments(parameters)))


def _board_parameters(
    period: Period, now: datetime, *, first: int, member_id: int | None
) -> dict[str, int]:
    if first < 0:
        raise ValueError("first must not be negative")
    parameters: dict[str, int] = {"period_key": period_key(period, now), "first": first}
    if member_id is not None:
        parameters["member_id"] = member_id
    return parameters


@functools.cache
def _board_sql(period: Period, mine: bool) -> AsyncpgStatement:
    return for_asyncpg(_board_statement(period, mine))


def _board(period: Period, rows: Iterable[Sequence[Any]]) -> Board:
    entries: list[Standing] = []
    me: Standing | None = None
    total_ranked = 0
    for part, row_member, display_name, row_points, row_above in rows:
        if part == 0:
            tied = entries and entries[-1].points == row_points
            rank = entries[-1].rank if tied else len(entries) + 1
            entries.append(Standing(int(row_member), display_name, int(row_points), rank))
        elif part == 1:
            me = Standing(int(row_member), display_name, int(row_points), int(row_above) + 1)
        else:
            total_ranked = int(row_above)
    return Board(period=period, entries=entries, me=me, total_ranked=total_ranked)


async def prune_counts(session: AsyncSession, now: datetime) -> int:
    """Delete the counts of months and weeks before the previous one: no board reads them
    (boards are of the current period), and no write touches them again (a member's scores
    leave a period's counts only within that period). The previous period stays, so that a
    write racing the turn of a period never finds its count gone. Returns the rows deleted."""
    deleted = 0
    for period, before in (
        (Period.MONTHLY, period_start(Period.MONTHLY, now)),
        (Period.WEEKLY, period_start(Period.WEEKLY, now)),
    ):
        assert before is not None
        previous = period_key(period, before - timedelta(days=1))
        result = await session.execute(
            delete(LeaderboardCount).where(
                LeaderboardCount.period == period.value, LeaderboardCount.period_key < previous
            )
        )
        deleted += int(getattr(result, "rowcount", 0) or 0)
    return deleted


@dataclass(frozen=True, slots=True)
class MemberPoints:
    """A member's points in each current period, its display name, its version: the id of its
    newest ledger entry (0 without any), which only grows as its points change; whether it is
    `listed` on the boards and whether it was `erased` (no standing, no name kept)."""

    points: dict[Period, int]
    display_name: str
    version: int
    listed: bool = True
    erased: bool = False


async def period_points(
    session: AsyncSession, member_ids: Collection[int], now: datetime
) -> dict[int, MemberPoints]:
    """Every period's points of these members at `now`, and whether they are listed, in one
    statement. Members that do not exist are left out."""
    if not member_ids:
        return {}

    def score(period: Period) -> ColumnElement[int]:
        points, of_period = _score(period, period_key(period, now))
        if not of_period:
            return points.expression
        return case((and_(*of_period), points), else_=0)

    periods = list(Period)
    newest = (
        select(func.coalesce(func.max(LedgerEntry.id), 0))
        .where(LedgerEntry.member_id == Member.id)
        .scalar_subquery()
    )
    rows = (
        await session.execute(
            select(
                Member.id,
                Member.display_name,
                newest,
                listed(),
                ~keeps_standing(),
                *(score(period) for period in periods),
            ).where(Member.id.in_(sorted(set(member_ids))))
        )
    ).all()
    return {
        int(row[0]): MemberPoints(
            points={period: int(value) for period, value in zip(periods, row[5:], strict=True)},
            display_name=row[1],
            version=int(row[2]),
            listed=bool(row[3]),
            erased=bool(row[4]),
        )
        for row in rows
    }


async def ranked_members(
    session: AsyncSession, period: Period, now: datetime
) -> Sequence[tuple[int, str, int, bool]]:
    """Every member with points in the board as (member id, display name, points, listed), for
    a rebuild and the outage snapshot: the listed ones are the board; the opted-out ones are
    kept for their own standing. Erased members are left out."""
    points, of_period = _score(period, period_key(period, now))
    rows = (
        await session.execute(
            select(Member.id, Member.display_name, points, listed()).where(
                *of_period, points > 0, keeps_standing()
            )
        )
    ).all()
    return [(int(r[0]), r[1], int(r[2]), bool(r[3])) for r in rows]
