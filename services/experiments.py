"""Promotion experiments: which eligible members are held out (CONTROL) and what each group did.

Assignment: the first 8 bytes of SHA-256 of "<promotion id>:<member id>" (decimal, UTF-8), read
as a big-endian unsigned integer, are the member's position; a position below controlShare x 2^64
(position / 2^64 < controlShare) is CONTROL, else TREATMENT. It depends on nothing
but the two ids, so every process and every restart assigns the same way, and a member's group
for one promotion says nothing about its group for another.

Results are read from the ledger (purchases in the promotion's dates, their PURCHASE entries and
the REVERSAL entries of their refunds) grouped by member in the database, one row per eligible
member. PostgreSQL assigns and sums those rows per group itself (`held_out_in_sql`, the same
hash, held equal to `Assignment` by the tests): one row a group reaches Python. SQLite has no
SHA-256 in SQL, so there the rows are streamed in batches and assigned here (memory stays flat;
the embedded database serves small programs).
"""

from __future__ import annotations

import enum
import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import LargeBinary, Select, String, cast, false, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from models import LedgerEntry, Member, Promotion, Purchase, Refund, Segment
from services.errors import Invalid
from services.segments import is_member
from services.segments.sql import RuleSql

# Member ids read per round trip while results stream the eligible members.
BATCH = 10_000
# Two-sided 95% quantile of the normal distribution.
Z_95 = 1.959963984540054
METHOD = (
    "Welch t, normal approximation: difference of the groups' per-member means, 95% interval "
    "estimate +/- 1.96 * sqrt(varT/nT + varC/nC) with sample variances (members without "
    "purchases count as 0)"
)


class ExperimentGroup(enum.StrEnum):
    TREATMENT = "TREATMENT"
    CONTROL = "CONTROL"


def check_control_share(value: float, field: list[str]) -> float:
    """A control share strictly between 0 and 1 (0 or 1 would be no experiment)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid("must be a number", field=field)
    if not math.isfinite(value) or not 0 < value < 1:
        raise Invalid("controlShare must be between 0 and 1, both excluded", field=field)
    return float(value)


def position(promotion_id: int, member_id: int) -> int:
    """The member's 64-bit place for this promotion (see the module docstring)."""
    digest = hashlib.sha256(f"{promotion_id}:{member_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class Assignment:
    """One promotion's split: CONTROL when position < controlShare x 2^64, compared exactly
    in integers (floor(share x 2^64) is exact: a float times a power of two). Hashes from a
    copy of the promotion's prefix (a few seconds a million members, see bench/experiments.py)."""

    __slots__ = ("_cut", "_prefix")

    def __init__(self, promotion_id: int, control_share: float | None) -> None:
        self._prefix = hashlib.sha256(f"{promotion_id}:".encode())
        self._cut = 0 if control_share is None else int(control_share * 2**64)

    def group(self, member_id: int) -> ExperimentGroup:
        if self._cut:
            digest = self._prefix.copy()
            digest.update(b"%d" % member_id)
            if int.from_bytes(digest.digest()[:8], "big") < self._cut:
                return ExperimentGroup.CONTROL
        return ExperimentGroup.TREATMENT


def assigned(control_share: float | None, promotion_id: int, member_id: int) -> ExperimentGroup:
    return Assignment(promotion_id, control_share).group(member_id)


def treated(promotion: Promotion, member_id: int) -> bool:
    """Whether the promotion applies to this member as far as its experiment goes: always
    without one; for an experiment, unless the member is held out as CONTROL (who then earns
    and sees everything as if the promotion did not exist)."""
    share = promotion.experiment_control_share
    if share is None:
        return True  # the common case costs no hashing
    return assigned(share, promotion.id, member_id) is ExperimentGroup.TREATMENT


# ---------------------------------------------------------------- eligibility


async def eligible_members(
    session: AsyncSession, promotion: Promotion, now: datetime
) -> Select[Any]:
    """`SELECT members.id` of the members the promotion is for: its segment's, or every member.
    The one place that decides who an experiment's results count."""
    stmt = select(Member.id)
    segment_id = promotion.segment_id
    if segment_id is not None:
        segments = {s.id: s.rule for s in await session.scalars(select(Segment))}
        sql = RuleSql(dialect=session.get_bind().dialect.name, now=now, rules=segments)
        stmt = stmt.where(sql.matches(segments[segment_id]))
    return stmt


async def is_eligible(
    session: AsyncSession, promotion: Promotion, member_id: int, now: datetime
) -> bool:
    """Whether `eligible_members` holds the member (the same rule, for one member)."""
    if await session.get(Member, member_id) is None:
        return False
    segment_id = promotion.segment_id
    return segment_id is None or await is_member(session, segment_id, member_id, now)


async def experiment_group(
    session: AsyncSession, promotion_id: int, member_id: int, now: datetime
) -> ExperimentGroup | None:
    """The member's group, or None: no such promotion, no experiment, or not eligible."""
    promotion = await session.get(Promotion, promotion_id)
    if promotion is None or promotion.experiment_control_share is None:
        return None
    if not await is_eligible(session, promotion, member_id, now):
        return None
    return assigned(promotion.experiment_control_share, promotion.id, member_id)


# ---------------------------------------------------------------- results


@dataclass(slots=True)
class _Moments:
    """Sum and sum of squares of one per-member figure over a group."""

    total: float = 0.0
    squares: float = 0.0

    def add(self, value: float) -> None:
        self.total += value
        self.squares += value * value

    def mean(self, n: int) -> float:
        return self.total / n if n else 0.0

    def variance(self, n: int) -> float:
        """Sample variance (n - 1), 0 for a single member."""
        if n < 2:
            return 0.0
        return max(self.squares - self.total * self.total / n, 0.0) / (n - 1)


@dataclass(slots=True)
class GroupResult:
    group: ExperimentGroup
    members: int = 0
    buyers: int = 0
    points_cost: int = 0
    purchases: _Moments = field(default_factory=_Moments)
    revenue: _Moments = field(default_factory=_Moments)

    @property
    def purchases_per_member(self) -> float:
        return self.purchases.mean(self.members)

    @property
    def revenue_per_member(self) -> float:
        return self.revenue.mean(self.members)


@dataclass(frozen=True, slots=True)
class Uplift:
    """TREATMENT minus CONTROL, with its 95% interval."""

    estimate: float
    low: float
    high: float


def welch(treatment: tuple[_Moments, int], control: tuple[_Moments, int]) -> Uplift:
    (t, nt), (c, nc) = treatment, control
    estimate = t.mean(nt) - c.mean(nc)
    error = math.sqrt(t.variance(nt) / nt + c.variance(nc) / nc)
    return Uplift(estimate, estimate - Z_95 * error, estimate + Z_95 * error)


@dataclass(frozen=True, slots=True)
class PromotionResults:
    promotion: Promotion
    groups: list[GroupResult]
    revenue_uplift: Uplift | None
    purchases_uplift: Uplift | None
    method: str = METHOD


def _per_member(eligible: Select[Any], start: datetime, end: datetime) -> Select[Any]:
    """One row per eligible member: its id, and for members with purchases that happened in
    [start, end) their number, their amounts less refunds, the points their PURCHASE entries
    earned and what their refunds' REVERSAL entries took back (null without purchases). The
    database groups by member; a purchase's refunds are summed apart (it may have several)."""
    in_window = (Purchase.occurred_at >= start, Purchase.occurred_at < end)
    earned = (
        select(
            Purchase.member_id,
            func.count().label("purchases"),
            func.sum(Purchase.amount - Purchase.refunded_amount).label("revenue"),
            func.sum(LedgerEntry.points).label("points"),
        )
        .join(LedgerEntry, LedgerEntry.id == Purchase.entry_id)
        .where(*in_window)
        .group_by(Purchase.member_id)
        .subquery()
    )
    reversal = aliased(LedgerEntry)
    reversed_ = (
        select(Purchase.member_id, func.sum(reversal.points).label("points"))
        .join(Refund, Refund.purchase_id == Purchase.id)
        .join(reversal, reversal.id == Refund.entry_id)
        .where(*in_window)
        .group_by(Purchase.member_id)
        .subquery()
    )
    members = eligible.subquery()
    return (
        select(
            members.c.id,
            earned.c.purchases,
            earned.c.revenue,
            earned.c.points,
            reversed_.c.points.label("reversed"),
        )
        .select_from(members)
        .outerjoin(earned, earned.c.member_id == members.c.id)
        .outerjoin(reversed_, reversed_.c.member_id == members.c.id)
    )


def held_out_in_sql(promotion_id: int, control_share: float, member_id: Any) -> Any:
    """PostgreSQL's `Assignment`: whether the member is CONTROL, computed by the database from
    the same bytes: the first 8 of sha256("<promotion id>:<member id>") below floor(share x
    2^64) as 8 big-endian bytes (bytea compares bytewise, unsigned: the integers' order).
    Tests hold it equal to the Python one."""
    key = literal(f"{promotion_id}:") + cast(member_id, String)
    position = func.substring(func.sha256(func.convert_to(key, "UTF8")), 1, 8)
    cut = int(control_share * 2**64).to_bytes(8, "big")
    return position < literal(cut, LargeBinary)


async def _grouped_in_sql(
    session: AsyncSession, per_member: Select[Any], promotion_id: int, share: float | None
) -> dict[ExperimentGroup, GroupResult]:
    """PostgreSQL: the database assigns and sums per group (one row a group, nothing per
    member reaches Python)."""
    members = per_member.subquery()
    held_out = held_out_in_sql(promotion_id, share, members.c.id) if share is not None else false()
    # Assigned in a subquery, grouped by its column (a GROUP BY repeating the expression would
    # not match it: its parameters are bound apart).
    rows = select(*members.c, held_out.label("held_out")).subquery()
    revenue, purchases = func.coalesce(rows.c.revenue, 0), func.coalesce(rows.c.purchases, 0)
    stmt = select(
        rows.c.held_out,
        func.count(),
        func.count(rows.c.purchases),
        func.sum(purchases),
        func.sum(purchases * purchases),
        func.sum(revenue),
        func.sum(revenue * revenue),
        func.coalesce(func.sum(rows.c.points), 0) + func.coalesce(func.sum(rows.c.reversed), 0),
    ).group_by(rows.c.held_out)
    groups = {g: GroupResult(g) for g in ExperimentGroup}
    for row in (await session.execute(stmt)).tuples():
        control, members, buyers, bought, bought_sq, spent, spent_sq, points = row
        group = groups[ExperimentGroup.CONTROL if control else ExperimentGroup.TREATMENT]
        group.members, group.buyers, group.points_cost = members, buyers, int(points)
        group.purchases = _Moments(float(bought), float(bought_sq))
        group.revenue = _Moments(float(spent), float(spent_sq))
    return groups


async def _grouped_streaming(
    session: AsyncSession, per_member: Select[Any], promotion_id: int, share: float | None
) -> dict[ExperimentGroup, GroupResult]:
    """SQLite (no SHA-256 in SQL): members streamed in batches and assigned here."""
    groups = {g: GroupResult(g) for g in ExperimentGroup}
    assignment = Assignment(promotion_id, share)
    # Core rows on the session's connection: the ORM's streaming costs 3x as much a row.
    connection = await session.connection()
    result = await connection.stream(per_member.execution_options(yield_per=BATCH))
    async for rows in result.partitions():
        for member_id, purchases, revenue, points, reversed_points in rows:
            group = groups[assignment.group(member_id)]
            group.members += 1
            if not purchases:
                continue  # no purchase: adds 0 to every sum
            group.buyers += 1
            group.points_cost += int(points) + int(reversed_points or 0)
            group.purchases.add(int(purchases))
            group.revenue.add(float(revenue))
    return groups


async def promotion_results(
    session: AsyncSession, promotion: Promotion, now: datetime, *, in_sql: bool | None = None
) -> PromotionResults:
    """Each group's figures over the promotion's dates so far, from one statement (so they add
    up to one state of the ledger). Streaming (SQLite's) needs the session in a transaction.
    `in_sql`: group in the database (default: on PostgreSQL)."""
    share = promotion.experiment_control_share
    eligible = await eligible_members(session, promotion, now)
    # Purchases are recorded as happening no later than when they are recorded: the promotion's
    # own dates are the window "so far".
    per_member = _per_member(eligible, promotion.starts_at, promotion.ends_at)
    if in_sql is None:
        in_sql = session.get_bind().dialect.name == "postgresql"
    grouped = _grouped_in_sql if in_sql else _grouped_streaming
    groups = await grouped(session, per_member, promotion.id, share)
    treatment, control = groups[ExperimentGroup.TREATMENT], groups[ExperimentGroup.CONTROL]
    if share is None:
        return PromotionResults(promotion, [treatment], None, None)
    compared = treatment.members > 0 and control.members > 0
    return PromotionResults(
        promotion,
        [treatment, control],
        welch((treatment.revenue, treatment.members), (control.revenue, control.members))
        if compared
        else None,
        welch((treatment.purchases, treatment.members), (control.purchases, control.members))
        if compared
        else None,
    )
