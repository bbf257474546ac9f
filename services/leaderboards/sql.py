"""Leaderboards computed by the database, in set-based SQL that runs on PostgreSQL and SQLite.

A member's leaderboard points in a period are the sum of its ledger entries of the qualifying
kinds (the earning kinds, and REVERSAL entries counting against them) that are not VOIDED and
were created inside the period (all time: the member's cached `earned_points`, that same sum).
Members with more than zero points are ranked.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    String,
    and_,
    case,
    cast,
    func,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from models import QUALIFYING_KINDS, EntryStatus, LedgerEntry, Member
from services.leaderboards.periods import Board, Period, Standing, period_end, period_start


def _qualifying() -> ColumnElement[bool]:
    return and_(LedgerEntry.kind.in_(QUALIFYING_KINDS), LedgerEntry.status != EntryStatus.VOIDED)


def _inside(period: Period, now: datetime) -> list[ColumnElement[bool]]:
    start, end = period_start(period, now), period_end(period, now)
    if start is None or end is None:
        return []
    return [LedgerEntry.created_at >= start, LedgerEntry.created_at < end]


def _totals(period: Period, now: datetime) -> Select[tuple[int, int]]:
    """Each ranked member's points in the period: one row a member with points > 0.

    All time, that is the members' cached `earned_points` (kept by every ledger write, indexed):
    no aggregation over the whole ledger."""
    if period is Period.ALL_TIME:
        return select(Member.id.label("member_id"), Member.earned_points.label("points")).where(
            Member.earned_points > 0
        )
    points = func.sum(LedgerEntry.points)
    return (
        select(LedgerEntry.member_id.label("member_id"), points.label("points"))
        .where(_qualifying(), *_inside(period, now))
        .group_by(LedgerEntry.member_id)
        .having(points > 0)
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
    statement: the period's totals are aggregated once, then a top-N sort (not a full one),
    and counts for my rank (1 + members with more points) and the total.

    Within the top, a rank is 1 + the position of the first entry with the same points: the
    list starts at the top, so that is the number of members with more points."""
    if first < 0:
        raise ValueError("first must not be negative")
    totals = _totals(period, now).cte("totals")
    top = (
        select(totals.c.member_id, totals.c.points)
        .order_by(totals.c.points.desc(), totals.c.member_id)
        .limit(first)
        .subquery("top")
    )
    no_int = cast(null(), BigInteger)
    parts = [
        select(
            literal_column("0").label("part"),
            top.c.member_id,
            Member.display_name,
            top.c.points,
            no_int.label("above"),
        ).join(Member, Member.id == top.c.member_id)
    ]
    if member_id is not None:
        mine = (
            select(totals.c.member_id, totals.c.points)
            .where(totals.c.member_id == member_id)
            .subquery("mine")
        )
        higher = totals.alias("higher")
        above = select(func.count()).where(higher.c.points > mine.c.points).scalar_subquery()
        parts.append(
            select(
                literal_column("1"), mine.c.member_id, Member.display_name, mine.c.points, above
            ).join(Member, Member.id == mine.c.member_id)
        )
    parts.append(
        select(
            literal_column("2"),
            no_int,
            cast(null(), String),
            no_int,
            select(func.count()).select_from(totals).scalar_subquery(),
        )
    )
    everything = union_all(*parts).subquery("board")
    rows = (
        await session.execute(
            select(everything).order_by(
                everything.c.part, everything.c.points.desc(), everything.c.member_id
            )
        )
    ).all()
    entries: list[Standing] = []
    me: Standing | None = None
    total = 0
    for part, row_member, display_name, points, above in rows:
        if part == 0:
            tied = entries and entries[-1].points == points
            rank = entries[-1].rank if tied else len(entries) + 1
            entries.append(Standing(int(row_member), display_name, int(points), rank))
        elif part == 1:
            me = Standing(int(row_member), display_name, int(points), int(above) + 1)
        else:
            total = int(above)
    return Board(period=period, entries=entries, me=me, total_ranked=total)


@dataclass(frozen=True, slots=True)
class MemberPoints:
    """A member's points in each current period, its display name, and its version: the id of
    its newest ledger entry (0 without any), which only grows as its points change."""

    points: dict[Period, int]
    display_name: str
    version: int


async def period_points(
    session: AsyncSession, member_ids: Collection[int], now: datetime
) -> dict[int, MemberPoints]:
    """Every period's points of these members at `now`, in one statement. Members that do not
    exist are left out."""
    if not member_ids:
        return {}
    qualifying = _qualifying()

    def total(*inside: ColumnElement[bool]) -> ColumnElement[int]:
        condition = and_(qualifying, *inside) if inside else qualifying
        return func.coalesce(func.sum(case((condition, LedgerEntry.points), else_=0)), 0)

    periods = list(Period)
    rows = (
        await session.execute(
            select(
                Member.id,
                Member.display_name,
                func.coalesce(func.max(LedgerEntry.id), 0),
                *(total(*_inside(period, now)) for period in periods),
            )
            .outerjoin(LedgerEntry, LedgerEntry.member_id == Member.id)
            .where(Member.id.in_(sorted(set(member_ids))))
            .group_by(Member.id, Member.display_name)
        )
    ).all()
    return {
        int(row[0]): MemberPoints(
            points={period: int(value) for period, value in zip(periods, row[3:], strict=True)},
            display_name=row[1],
            version=int(row[2]),
        )
        for row in rows
    }


async def ranked_members(
    session: AsyncSession, period: Period, now: datetime
) -> Sequence[tuple[int, str, int]]:
    """Every ranked member of the board as (member id, display name, points), for a rebuild."""
    totals = _totals(period, now).subquery("totals")
    rows = (
        await session.execute(
            select(totals.c.member_id, Member.display_name, totals.c.points).join(
                Member, Member.id == totals.c.member_id
            )
        )
    ).all()
    return [(int(r[0]), r[1], int(r[2])) for r in rows]
