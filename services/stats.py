"""Program figures over a window, for admins: three aggregate queries, whatever the size.

What counts as issued, redeemed and expired, who counts as active, and what the program owes,
are defined here once (`issued_points`, `redeemed_points`, `expired_points`, `active_entry`,
`counted_entry`, `liability_of`); `services.timeline` charts the same figures per bucket."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, SQLColumnExpression, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import EARNING_KINDS, EntryKind, EntryStatus, LedgerEntry, Member, Purchase
from services.errors import Invalid
from services.program import get_program


@dataclass(frozen=True, slots=True)
class ProgramStats:
    members: int
    active_members: int
    points_issued: int
    points_redeemed: int
    points_expired: int
    outstanding_points: int
    liability: Decimal
    redemption_rate: float
    repeat_purchase_rate: float


# Kinds whose entries make their member active: it earned or redeemed.
ACTIVE_KINDS = frozenset({*EARNING_KINDS, EntryKind.REDEMPTION})

# The definitions below read an entry's kind and points; the charts apply them to the daily
# rollup too (services.timeline), whose rows sum one sign of one kind's points, so each
# condition on a row (its kind, the sign of its sum) holds for every entry summed in it.
Kind = SQLColumnExpression[Any]
Points = SQLColumnExpression[Any]


def counted_entry() -> ColumnElement[bool]:
    """The entries every figure is made of: all but VOIDED ones (pending points count)."""
    return LedgerEntry.status != EntryStatus.VOIDED


def issued_points(kind: Kind = LedgerEntry.kind, points: Points = LedgerEntry.points) -> Points:
    """An entry's points issued: earnings (every earning kind) and positive adjustments, with
    refund reversals counting against them; 0 for other entries."""
    issued = kind.in_([*EARNING_KINDS, EntryKind.REVERSAL]) | (
        (kind == EntryKind.ADJUSTMENT) & (points > 0)
    )
    return case((issued, points), else_=0)


def redeemed_points(kind: Kind = LedgerEntry.kind, points: Points = LedgerEntry.points) -> Points:
    """An entry's points spent on rewards (a cancelled redemption's refund counts against)."""
    return case((kind == EntryKind.REDEMPTION, -points), else_=0)


def expired_points(kind: Kind = LedgerEntry.kind, points: Points = LedgerEntry.points) -> Points:
    """An entry's points written off by expiry."""
    return case((kind == EntryKind.EXPIRATION, -points), else_=0)


def active_entry() -> ColumnElement[bool]:
    """An entry that makes its member active: it earned or redeemed."""
    return LedgerEntry.kind.in_(ACTIVE_KINDS)


def liability_of(points: int, point_value: Decimal) -> Decimal:
    """What `points` outstanding are worth to members, in the program's currency."""
    return (points * point_value).quantize(Decimal("0.01"))


async def program_stats(session: AsyncSession, *, start: datetime, end: datetime) -> ProgramStats:
    """Figures for [start, end); outstanding points and liability are as of now.

    * issued: points earned (every earning kind, pending ones included) and positive
      adjustments, less what refunds reversed;
    * redeemed: points spent on rewards, less what cancelled redemptions gave back;
    * active members: those who earned or redeemed inside the window.
    """
    if end <= start:
        raise Invalid("`to` must be after `from`", field=["to"])
    e = LedgerEntry
    ledger = (
        await session.execute(
            select(
                func.coalesce(func.sum(issued_points()), 0),
                func.coalesce(func.sum(redeemed_points()), 0),
                func.coalesce(func.sum(expired_points()), 0),
                func.count(func.distinct(case((active_entry(), e.member_id)))),
            ).where(e.created_at >= start, e.created_at < end, counted_entry())
        )
    ).one()
    members = (
        await session.execute(
            select(
                func.count(case((Member.joined_at < end, Member.id))),
                func.coalesce(func.sum(Member.available + Member.pending), 0),
            )
        )
    ).one()
    per_member = (
        select(func.count(Purchase.id).label("purchases"))
        .where(Purchase.occurred_at >= start, Purchase.occurred_at < end)
        .group_by(Purchase.member_id)
        .subquery()
    )
    buyers, repeat_buyers = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((per_member.c.purchases >= 2, 1), else_=0)), 0),
            ).select_from(per_member)
        )
    ).one()
    issued, redeemed, expired = int(ledger[0]), int(ledger[1]), int(ledger[2])
    outstanding = int(members[1])
    point_value = (await get_program(session)).point_value
    return ProgramStats(
        members=int(members[0]),
        active_members=int(ledger[3]),
        points_issued=issued,
        points_redeemed=redeemed,
        points_expired=expired,
        outstanding_points=outstanding,
        liability=liability_of(outstanding, point_value),
        redemption_rate=redeemed / issued if issued > 0 else 0.0,
        repeat_purchase_rate=int(repeat_buyers) / int(buyers) if buyers else 0.0,
    )
