"""The program's figures per bucket of time, for the admin charts (`programTimeline`).

A window [start, end) is cut into UTC days, ISO weeks (from Monday 00:00 UTC, as the weekly
leaderboard) or calendar months; the first and last buckets are cut at the window's edges, so
every bucket is itself a window over which `programStats` gives the same figures: the
definitions of what counts as issued, redeemed, expired and active are `services.stats`'s.

Each figure family is one set-based statement, on PostgreSQL and SQLite alike: the bucket
bounds, computed here, are a `VALUES` list the ledger is joined to by range (the
`created_at` index finds each bucket's entries), so the calendar's rules live in Python once
and the database only sums. The number of buckets is bounded (`MAX_BUCKETS`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import CTE, Integer, and_, column, func, select, values
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    PROGRAM_ID,
    LedgerEntry,
    Member,
    Program,
    Redemption,
    RedemptionStatus,
    Reward,
    RewardKind,
)
from models.base import UtcDateTime
from services.errors import Invalid
from services.leaderboards.periods import Period, period_end
from services.stats import (
    active_entry,
    counted_entry,
    expired_points,
    issued_points,
    liability_of,
    redeemed_points,
)

# A year of days with room to spare (a window from noon to noon spans 367 of them); a chart
# has no use for more points than a screen has columns.
MAX_BUCKETS = 400
MAX_TOP_REWARDS = 50


class Interval(enum.StrEnum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    end: datetime  # exclusive


@dataclass(frozen=True, slots=True)
class PointsFigures:
    bucket: Bucket
    issued: int
    redeemed: int
    expired: int
    outstanding: int  # available + pending at the bucket's end
    liability: Decimal  # outstanding x the program's point value (today's)


@dataclass(frozen=True, slots=True)
class MemberFigures:
    bucket: Bucket
    active: int  # earned or redeemed inside the bucket
    joined: int  # enrolled inside the bucket
    enrolled: int  # enrolled by the bucket's end


@dataclass(frozen=True, slots=True)
class KindFigures:
    kind: RewardKind
    redemptions: int
    points: int


@dataclass(frozen=True, slots=True)
class RedemptionFigures:
    bucket: Bucket
    by_kind: list[KindFigures]  # kinds with at least one redemption, in RewardKind's order


@dataclass(frozen=True, slots=True)
class TierCount:
    tier_id: int
    members: int


@dataclass(frozen=True, slots=True)
class RewardCount:
    reward_id: int
    redemptions: int
    points: int


def buckets(start: datetime, end: datetime, interval: Interval) -> list[Bucket]:
    """[start, end) cut at every UTC midnight, Monday or first of the month inside it.

    Refuses an empty or reversed window, naive datetimes, and more than MAX_BUCKETS buckets
    (without building them first: an absurd range costs at most MAX_BUCKETS steps)."""
    start, end = _aware(start, "from"), _aware(end, "to")
    if end <= start:
        raise Invalid("`to` must be after `from`", field=["to"])
    cut: list[Bucket] = []
    left = start
    while left < end:
        if len(cut) == MAX_BUCKETS:
            raise Invalid(
                f"at most {MAX_BUCKETS} buckets: choose a shorter window or a longer interval",
                field=["interval"],
            )
        right = min(_next_boundary(left, interval), end)
        cut.append(Bucket(left, right))
        left = right
    return cut


def _aware(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise Invalid(f"`{name}` needs a time zone (e.g. Z for UTC)", field=[name])
    return moment.astimezone(UTC)


def _next_boundary(moment: datetime, interval: Interval) -> datetime:
    """The first bucket boundary after `moment`."""
    if interval is Interval.DAY:
        midnight = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
        return midnight + timedelta(days=1)
    boundary = period_end(Period.WEEKLY if interval is Interval.WEEK else Period.MONTHLY, moment)
    assert boundary is not None, "weeks and months have ends"
    return boundary


def _bounds(cut: Sequence[Bucket]) -> CTE:
    """The buckets as a table the database joins to: (i, starts, ends)."""
    table = values(
        column("i", Integer),
        column("starts", UtcDateTime),
        column("ends", UtcDateTime),
        name="buckets",
    ).data([(i, bucket.start, bucket.end) for i, bucket in enumerate(cut)])
    return table.cte("buckets")


async def points(session: AsyncSession, cut: Sequence[Bucket]) -> list[PointsFigures]:
    """Points issued, redeemed and expired in each bucket, and what the program owes at its
    end, in one statement.

    What is owed at a moment is the sum of the counted entries before it (the members'
    `available + pending` are kept equal to those sums). It is read backwards from what is
    owed now, less what was entered since: the statement reads only the window and what
    follows it, which for a chart ending today is nothing more."""
    b = _bounds(cut)
    e = LedgerEntry
    end = cut[-1].end
    owed_now = select(func.coalesce(func.sum(Member.available + Member.pending), 0))
    entered_after = select(func.coalesce(func.sum(e.points), 0)).where(
        e.created_at >= end, counted_entry()
    )
    point_value = select(Program.point_value).where(Program.id == PROGRAM_ID)
    rows = (
        await session.execute(
            select(
                b.c.i,
                func.coalesce(func.sum(issued_points()), 0),
                func.coalesce(func.sum(redeemed_points()), 0),
                func.coalesce(func.sum(expired_points()), 0),
                func.coalesce(func.sum(e.points), 0),
                owed_now.scalar_subquery(),
                entered_after.scalar_subquery(),
                point_value.scalar_subquery(),
            )
            .select_from(b)
            .outerjoin(
                e, and_(e.created_at >= b.c.starts, e.created_at < b.c.ends, counted_entry())
            )
            .group_by(b.c.i)
            .order_by(b.c.i)
        )
    ).all()
    owed = int(rows[0][5]) - int(rows[0][6])  # at the end of the last bucket
    value = Decimal(rows[0][7])
    figures: list[PointsFigures] = []
    for i, issued, redeemed, expired, net, *_ in reversed(rows):
        figures.append(
            PointsFigures(
                cut[i], int(issued), int(redeemed), int(expired), owed, liability_of(owed, value)
            )
        )
        owed -= int(net)  # what was owed at this bucket's start, the end of the one before
    figures.reverse()
    return figures


async def members(session: AsyncSession, cut: Sequence[Bucket]) -> list[MemberFigures]:
    """Active members, new members and members enrolled, per bucket, in one statement."""
    b = _bounds(cut)
    e = LedgerEntry
    active = select(func.count(func.distinct(e.member_id))).where(
        e.created_at >= b.c.starts, e.created_at < b.c.ends, counted_entry(), active_entry()
    )
    joined = select(func.count()).where(Member.joined_at >= b.c.starts, Member.joined_at < b.c.ends)
    before = select(func.count()).where(Member.joined_at < cut[0].start)
    rows = (
        await session.execute(
            select(
                b.c.i,
                active.scalar_subquery(),
                joined.scalar_subquery(),
                before.scalar_subquery(),
            ).order_by(b.c.i)
        )
    ).all()
    enrolled = int(rows[0][3])
    figures: list[MemberFigures] = []
    for i, active_count, joined_count, _ in rows:
        enrolled += int(joined_count)
        figures.append(MemberFigures(cut[i], int(active_count), int(joined_count), enrolled))
    return figures


async def redemptions(session: AsyncSession, cut: Sequence[Bucket]) -> list[RedemptionFigures]:
    """Redemptions made in each bucket and not cancelled since, by reward kind, in one
    statement. (`programStats.pointsRedeemed` counts a cancellation when it happens instead:
    it is a flow of points, these are the rewards members took.)"""
    b = _bounds(cut)
    r = Redemption
    rows = (
        await session.execute(
            select(b.c.i, Reward.kind, func.count(), func.sum(r.points))
            .select_from(b)
            .join(r, and_(r.created_at >= b.c.starts, r.created_at < b.c.ends))
            .join(Reward, Reward.id == r.reward_id)
            .where(r.status != RedemptionStatus.CANCELLED)
            .group_by(b.c.i, Reward.kind)
        )
    ).all()
    found = {(i, RewardKind(kind)): (int(n), int(spent)) for i, kind, n, spent in rows}
    return [
        RedemptionFigures(
            bucket,
            [KindFigures(kind, *found[i, kind]) for kind in RewardKind if (i, kind) in found],
        )
        for i, bucket in enumerate(cut)
    ]


async def members_by_tier(session: AsyncSession) -> list[TierCount]:
    """How many members each tier holds now (every member, as `programStats.members`)."""
    rows = await session.execute(
        select(Member.tier_id, func.count()).group_by(Member.tier_id).order_by(Member.tier_id)
    )
    return [TierCount(int(tier_id), int(n)) for tier_id, n in rows]


async def top_rewards(
    session: AsyncSession, *, start: datetime, end: datetime, first: int
) -> list[RewardCount]:
    """The rewards redeemed most in [start, end) (cancelled redemptions left out): by
    redemptions, then points, then the older reward."""
    if not 1 <= first <= MAX_TOP_REWARDS:
        raise Invalid(f"`first` must be between 1 and {MAX_TOP_REWARDS}", field=["first"])
    r = Redemption
    count, spent = func.count().label("n"), func.sum(r.points).label("spent")
    rows = await session.execute(
        select(r.reward_id, count, spent)
        .where(
            r.created_at >= _aware(start, "from"),
            r.created_at < _aware(end, "to"),
            r.status != RedemptionStatus.CANCELLED,
        )
        .group_by(r.reward_id)
        .order_by(count.desc(), spent.desc(), r.reward_id)
        .limit(first)
    )
    return [RewardCount(int(reward_id), int(n), int(total)) for reward_id, n, total in rows]
