"""The program's figures per bucket of time, for the admin charts (`programTimeline`).

A window [start, end) is cut into UTC days, ISO weeks (from Monday 00:00 UTC, as the weekly
leaderboard) or calendar months; the first and last buckets are cut at the window's edges, so
every bucket is itself a window over which `programStats` gives the same figures: the
definitions of what counts as issued, redeemed, expired and active are `services.stats`'s.

Each figure family is one set-based statement, on PostgreSQL and SQLite alike: the bucket
bounds, computed here, are a table the database joins to (`_table`: arrays unnested on
PostgreSQL, so the statement's text never changes; a `VALUES` list on SQLite), whole days
read from the daily rollup (`services.rollup`) and cut edges from the ledger by range, so the
calendar's rules live in Python once and the database only sums. The number of buckets is
bounded (`MAX_BUCKETS`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ARRAY,
    CTE,
    Date,
    Integer,
    Row,
    Select,
    String,
    and_,
    bindparam,
    case,
    cast,
    column,
    func,
    or_,
    select,
    union,
    union_all,
    values,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

from models import (
    PROGRAM_ID,
    LedgerEntry,
    Member,
    MemberDay,
    Program,
    Redemption,
    RedemptionStatus,
    Reward,
    RewardKind,
)
from models.base import UtcDateTime
from models.engine import planner_settings
from services import rollup
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


Columns = Sequence[tuple[str, TypeEngine[Any]]]


def _table(
    session: AsyncSession, name: str, columns: Columns, rows: Sequence[tuple[Any, ...]]
) -> CTE:
    """`rows` as a table the database joins to. On PostgreSQL one array a column, unnested:
    the statement is the same whatever the rows, so SQLAlchemy compiles it once and the
    driver sends a few arrays (a `VALUES` list of a year of days was compiled again every
    call: thousands of parameters, more time than the database took). SQLite has no
    arrays: a `VALUES` list."""
    if session.get_bind().dialect.name != "postgresql":
        listed = values(*(column(key, type_) for key, type_ in columns), name=name).data(rows)
        return listed.cte(name)
    arrays = [
        cast(bindparam(f"{name}_{key}", [row[n] for row in rows], ARRAY(type_)), ARRAY(type_))
        for n, (key, type_) in enumerate(columns)
    ]
    unnested = (
        func.unnest(*arrays)
        .table_valued(*(column(key, type_) for key, type_ in columns))
        .render_derived(name=f"{name}_rows")
    )
    return select(*(unnested.c[key] for key, _ in columns)).cte(name)


# Each chart statement planned for its own buckets: their text no longer changes with the
# window, so after five runs on a connection PostgreSQL would switch to a generic plan, blind
# to the arrays (1.5-2 s where the custom plan takes ~40 ms: bench.timeline).
_CUSTOM_PLANS = {"plan_cache_mode": "force_custom_plan"}


async def _run(session: AsyncSession, statement: Select[Any]) -> Sequence[Row[Any]]:
    async with planner_settings(session, _CUSTOM_PLANS):
        return (await session.execute(statement)).all()


def _bounds(session: AsyncSession, cut: Sequence[Bucket]) -> CTE:
    """The buckets as a table the database joins to: (i, starts, ends)."""
    columns: Columns = [("i", Integer()), ("starts", UtcDateTime()), ("ends", UtcDateTime())]
    rows = [(i, bucket.start, bucket.end) for i, bucket in enumerate(cut)]
    return _table(session, "buckets", columns, rows)


def _midnight_after(moment: datetime) -> datetime:
    """`moment` if it is a UTC midnight, else the next one."""
    midnight = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return midnight if midnight == moment else midnight + timedelta(days=1)


def _midnight_before(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class _Split:
    """A window as the whole UTC days the rollup holds ([days_from, days_to), empty when
    equal) and the parts of days at its edges read from the ledger (`head`, `tail`, each
    [start, end), empty when equal)."""

    days_from: date
    days_to: date
    head: tuple[datetime, datetime]
    tail: tuple[datetime, datetime]


def _split(start: datetime, end: datetime) -> _Split:
    first, last = _midnight_after(start), _midnight_before(end)
    if first < last:
        return _Split(first.date(), last.date(), (start, first), (last, end))
    return _Split(first.date(), first.date(), (start, end), (end, end))


# What `points` reads after the window (to work back from what is owed now): its index.
_AFTER = -1


async def points(session: AsyncSession, cut: Sequence[Bucket]) -> list[PointsFigures]:
    """Points issued, redeemed and expired in each bucket, and what the program owes at its
    end, in one statement.

    Whole UTC days are read from the daily rollup (services.rollup), the parts of days at a
    bucket's edges from the ledger, so any window costs about its number of days. What is
    owed at a moment is the sum of the counted entries before it (the members'
    `available + pending` are kept equal to those sums): it is read backwards from what is
    owed now, less what was entered since the window's end."""
    end = cut[-1].end
    splits = [(i, _split(bucket.start, bucket.end)) for i, bucket in enumerate(cut)]
    after = _midnight_after(end)
    splits.append((_AFTER, _Split(after.date(), date.max, (end, after), (after, after))))
    # A bucket of one whole day is joined to the rollup by equality (a hash join); only
    # longer ranges by range (a nested loop over the rollup's rows, once per range): a year
    # by day is 365 one-day ranges.
    whole = [(i, s.days_from, s.days_to) for i, s in splits if s.days_from < s.days_to]
    one_day = [(i, d0) for i, d0, d1 in whole if d1 - d0 == timedelta(days=1)]
    longer = [(i, d0, d1) for i, d0, d1 in whole if d1 - d0 > timedelta(days=1)]
    live = [(i, *part) for i, s in splits for part in (s.head, s.tail) if part[0] < part[1]]
    r, e = rollup.days(), LedgerEntry
    figures_of_days = (
        (issued_points(r.c.kind, r.c.credited) + issued_points(r.c.kind, r.c.debited)).label(
            "issued"
        ),
        (redeemed_points(r.c.kind, r.c.credited) + redeemed_points(r.c.kind, r.c.debited)).label(
            "redeemed"
        ),
        (expired_points(r.c.kind, r.c.credited) + expired_points(r.c.kind, r.c.debited)).label(
            "expired"
        ),
        (r.c.credited + r.c.debited).label("net"),
    )
    day_ranges = (  # never empty: what follows the window is one
        _table(session, "day_ranges", [("i", Integer()), ("d0", Date()), ("d1", Date())], longer)
    )
    parts = [
        select(day_ranges.c.i, *figures_of_days)
        .select_from(day_ranges)
        .join(r, and_(r.c.day >= day_ranges.c.d0, r.c.day < day_ranges.c.d1))
    ]
    if one_day:
        days_ = _table(session, "days", [("i", Integer()), ("day", Date())], one_day)
        parts.append(
            select(days_.c.i, *figures_of_days).select_from(days_).join(r, r.c.day == days_.c.day)
        )
    if live:
        live_ranges = _table(
            session,
            "live_ranges",
            [("i", Integer()), ("t0", UtcDateTime()), ("t1", UtcDateTime())],
            live,
        )
        parts.append(
            select(
                live_ranges.c.i,
                issued_points().label("issued"),
                redeemed_points().label("redeemed"),
                expired_points().label("expired"),
                e.points.label("net"),
            )
            .select_from(live_ranges)
            .join(
                e,
                and_(
                    e.created_at >= live_ranges.c.t0,
                    e.created_at < live_ranges.c.t1,
                    counted_entry(),
                ),
            )
        )
    both = union_all(*parts).subquery("parts")
    sums = (
        select(
            both.c.i,
            func.sum(both.c.issued).label("issued"),
            func.sum(both.c.redeemed).label("redeemed"),
            func.sum(both.c.expired).label("expired"),
            func.sum(both.c.net).label("net"),
        )
        .group_by(both.c.i)
        .subquery("sums")
    )
    # Every index once (the buckets', and what follows the window), so a row always comes.
    wanted = _table(session, "wanted", [("i", Integer())], [(i,) for i, _ in splits])
    owed_now = select(func.coalesce(func.sum(Member.available + Member.pending), 0))
    point_value = select(Program.point_value).where(Program.id == PROGRAM_ID)
    rows = await _run(
        session,
        select(
            wanted.c.i,
            func.coalesce(sums.c.issued, 0),
            func.coalesce(sums.c.redeemed, 0),
            func.coalesce(sums.c.expired, 0),
            func.coalesce(sums.c.net, 0),
            owed_now.scalar_subquery(),
            point_value.scalar_subquery(),
        )
        .select_from(wanted)
        .outerjoin(sums, sums.c.i == wanted.c.i),
    )
    found = {int(row[0]): [int(n) for n in row[1:5]] for row in rows}
    owed_now_, value = int(rows[0][5]), Decimal(rows[0][6])
    owed = owed_now_ - found[_AFTER][3]  # at the end of the last bucket
    figures: list[PointsFigures] = []
    for i in reversed(range(len(cut))):
        issued, redeemed, expired, net = found[i]
        figures.append(
            PointsFigures(cut[i], issued, redeemed, expired, owed, liability_of(owed, value))
        )
        owed -= net  # what was owed at this bucket's start, the end of the one before
    figures.reverse()
    return figures


def _whole_period(bucket: Bucket, interval: Interval) -> str | None:
    """The rollup's period ('D', 'W', 'M') when `bucket` is a whole one, else None."""
    start = bucket.start
    if start != _midnight_before(start) or bucket.end != _next_boundary(start, interval):
        return None
    if interval is Interval.WEEK and start.weekday() != 0:
        return None
    if interval is Interval.MONTH and start.day != 1:
        return None
    return {Interval.DAY: "D", Interval.WEEK: "W", Interval.MONTH: "M"}[interval]


async def members(
    session: AsyncSession, cut: Sequence[Bucket], interval: Interval
) -> list[MemberFigures]:
    """Active members, new members and members enrolled, per bucket, in one statement.

    A whole day, week or month reads its count of active members from the rollup; a bucket
    cut at the window's edge counts the distinct members of its whole days (`member_days`)
    and adds those active only in the parts of days at its edges (read from the ledger).
    Every family of figures is a join of the bucket list grouped by bucket, not a subquery
    run once per bucket: a year by day is 366 buckets."""
    rows_in: list[tuple[object, ...]] = []
    for i, bucket in enumerate(cut):
        period = _whole_period(bucket, interval)
        if period is not None:  # nothing else to read: empty day and edge ranges
            day = bucket.start.date()
            edges = [bucket.start] * 4
            rows_in.append((i, bucket.start, bucket.end, period, day, day, day, *edges))
        else:  # a period no summary row holds ('' matches none)
            s = _split(bucket.start, bucket.end)
            whole_days = (s.days_from, s.days_to)
            rows_in.append(
                (i, bucket.start, bucket.end, "", date.min, *whole_days, *s.head, *s.tail)
            )
    columns: Columns = [
        ("i", Integer()),
        ("starts", UtcDateTime()),
        ("ends", UtcDateTime()),
        ("period", String(1)),
        ("pstart", Date()),
        ("d0", Date()),
        ("d1", Date()),
        ("t0", UtcDateTime()),
        ("t1", UtcDateTime()),
        ("u0", UtcDateTime()),
        ("u1", UtcDateTime()),
    ]
    b = _table(session, "buckets", columns, rows_in)
    e, a, md = LedgerEntry, rollup.active_members(), MemberDay
    whole = (
        select(b.c.i, func.sum(a.c.members).label("n"))
        .select_from(b)
        .join(a, and_(a.c.period == b.c.period, a.c.starts == b.c.pstart))
        .group_by(b.c.i)
        .subquery("whole")
    )
    # A cut bucket's members: those of its whole days and those active in the parts of days
    # at its edges, one distinct set (UNION), each part read through its index. A subquery
    # correlated to the bucket two levels up (auto-correlation looks one level up only), run
    # for cut buckets only (a CASE evaluates it only there): a window has at most two. As a
    # join of (bucket, member) pairs it sorted all of them together, on disk, and read
    # `member_days` through its heap (planned for ~220,000 rows a bucket): slower.
    on_days = select(md.member_id).where(md.day >= b.c.d0, md.day < b.c.d1).correlate(b)
    at_edges = (
        select(e.member_id)
        .where(
            or_(
                and_(e.created_at >= b.c.t0, e.created_at < b.c.t1),
                and_(e.created_at >= b.c.u0, e.created_at < b.c.u1),
            ),
            counted_entry(),
            active_entry(),
        )
        .correlate(b)
    )
    in_cut = select(func.count()).select_from(union(on_days, at_edges).subquery("ids"))
    cut_count = case((b.c.period == "", in_cut.scalar_subquery()), else_=0)
    joined = (
        select(b.c.i, func.count().label("n"))
        .select_from(b)
        .join(Member, and_(Member.joined_at >= b.c.starts, Member.joined_at < b.c.ends))
        .group_by(b.c.i)
        .subquery("joined")
    )
    before = select(func.count()).where(Member.joined_at < cut[0].start)
    rows = await _run(
        session,
        select(
            b.c.i,
            func.coalesce(whole.c.n, 0) + cut_count,
            func.coalesce(joined.c.n, 0),
            before.scalar_subquery(),
        )
        .select_from(b)
        .outerjoin(whole, whole.c.i == b.c.i)
        .outerjoin(joined, joined.c.i == b.c.i)
        .order_by(b.c.i),
    )
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
    b = _bounds(session, cut)
    r = Redemption
    rows = await _run(
        session,
        select(b.c.i, Reward.kind, func.count(), func.sum(r.points))
        .select_from(b)
        .join(r, and_(r.created_at >= b.c.starts, r.created_at < b.c.ends))
        .join(Reward, Reward.id == r.reward_id)
        .where(r.status != RedemptionStatus.CANCELLED)
        .group_by(b.c.i, Reward.kind),
    )
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
