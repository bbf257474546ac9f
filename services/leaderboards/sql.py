"""Leaderboards computed by the database, in set-based SQL that runs on PostgreSQL and SQLite.

A member's leaderboard points in a period are the sum of its ledger entries of the qualifying
kinds (the earning kinds, and REVERSAL entries counting against them) that are not VOIDED and
were created inside the period (all time: the member's cached `earned_points`, that same sum).
Members with more than zero points are ranked.

Only *listed* members appear on a board or count in anyone's rank: a member that opted out of
the leaderboards, or was erased, is on none. An opted-out member still has a standing of its
own (where it would rank among the listed members); an erased one has none. `unlisted()` and
`keeps_standing()` are those two rules, and every query here (and so Redis, which is fed from
them) goes through them.
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
    not_,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from models import QUALIFYING_KINDS, EntryStatus, LedgerEntry, Member
from services.leaderboards.periods import Board, Period, Standing, period_end, period_start


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


def _qualifying() -> ColumnElement[bool]:
    return and_(LedgerEntry.kind.in_(QUALIFYING_KINDS), LedgerEntry.status != EntryStatus.VOIDED)


def _inside(period: Period, now: datetime) -> list[ColumnElement[bool]]:
    start, end = period_start(period, now), period_end(period, now)
    if start is None or end is None:
        return []
    return [LedgerEntry.created_at >= start, LedgerEntry.created_at < end]


def _totals(period: Period, now: datetime, *, listed_only: bool) -> Select[tuple[int, int]]:
    """Each member's points in the period, one row a member with points > 0: the listed
    members only (a board), or every member (a rebuild, which keeps opted-out standings).

    All time, that is the members' cached `earned_points` (kept by every ledger write, indexed):
    no aggregation over the whole ledger. For a period, the few unlisted members are set aside
    with `NOT IN` a subquery (hashed once, not probed per entry)."""
    if period is Period.ALL_TIME:
        query = select(Member.id.label("member_id"), Member.earned_points.label("points")).where(
            Member.earned_points > 0
        )
        return query.where(listed()) if listed_only else query
    points = func.sum(LedgerEntry.points)
    conditions = [_qualifying(), *_inside(period, now)]
    if listed_only:
        conditions.append(LedgerEntry.member_id.not_in(select(Member.id).where(unlisted())))
    return (
        select(LedgerEntry.member_id.label("member_id"), points.label("points"))
        .where(*conditions)
        .group_by(LedgerEntry.member_id)
        .having(points > 0)
    )


def _own_total(period: Period, now: datetime, member_id: int) -> Select[tuple[int, int]]:
    """One member's points in the period, listed or not (a row only when above 0): its own
    index range of the ledger, not the period's aggregation."""
    if period is Period.ALL_TIME:
        return select(Member.id.label("member_id"), Member.earned_points.label("points")).where(
            Member.id == member_id, Member.earned_points > 0
        )
    points = func.sum(LedgerEntry.points)
    return (
        select(LedgerEntry.member_id.label("member_id"), points.label("points"))
        .where(LedgerEntry.member_id == member_id, _qualifying(), *_inside(period, now))
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
    statement: the listed members' totals are aggregated once, then a top-N sort (not a full
    one), and counts for my rank (1 + listed members with more points) and the total. My own
    standing is there when I opted out too (where I would rank), not when I was erased.

    Within the top, a rank is 1 + the position of the first entry with the same points: the
    list starts at the top, so that is the number of members with more points."""
    if first < 0:
        raise ValueError("first must not be negative")
    totals = _totals(period, now, listed_only=True).cte("totals")
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
        mine = _own_total(period, now, member_id).subquery("mine")
        higher = totals.alias("higher")
        above = select(func.count()).where(higher.c.points > mine.c.points).scalar_subquery()
        parts.append(
            select(literal_column("1"), mine.c.member_id, Member.display_name, mine.c.points, above)
            .join(Member, Member.id == mine.c.member_id)
            .where(keeps_standing())
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
                listed(),
                ~keeps_standing(),
                *(total(*_inside(period, now)) for period in periods),
            )
            .outerjoin(LedgerEntry, LedgerEntry.member_id == Member.id)
            .where(Member.id.in_(sorted(set(member_ids))))
            .group_by(Member.id, Member.display_name, Member.leaderboard_opt_out, Member.erased_at)
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
    totals = _totals(period, now, listed_only=False).subquery("totals")
    rows = (
        await session.execute(
            select(totals.c.member_id, Member.display_name, totals.c.points, listed())
            .join(Member, Member.id == totals.c.member_id)
            .where(keeps_standing())
        )
    ).all()
    return [(int(r[0]), r[1], int(r[2]), bool(r[3])) for r in rows]
