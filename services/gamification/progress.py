"""A member's count of a metric inside a window, from the tables that already record it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    QUALIFYING_KINDS,
    ChallengeMetric,
    EntryKind,
    EntryStatus,
    LedgerEntry,
    Member,
    Purchase,
)

# Points from challenges do not count towards POINTS_EARNED challenges: no chain reactions.
_EARNED_KINDS = [kind for kind in QUALIFYING_KINDS if kind is not EntryKind.CHALLENGE]


def _within(column: Any, start: datetime | None, end: datetime | None) -> list[ColumnElement[bool]]:
    conditions = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return conditions


async def metric_value(
    session: AsyncSession,
    member_id: int,
    metric: ChallengeMetric,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> int:
    """The member's `metric` in [start, end) (None: unbounded). Purchases count when they
    happened and only while not fully refunded; amounts count net of refunds, in whole
    currency units; a referral counts when the referred member's first purchase paid it."""
    stmt: Select[Any]
    if metric is ChallengeMetric.PURCHASE_COUNT:
        stmt = select(func.count(Purchase.id)).where(
            Purchase.member_id == member_id,
            Purchase.refunded_amount < Purchase.amount,
            *_within(Purchase.occurred_at, start, end),
        )
    elif metric is ChallengeMetric.PURCHASE_AMOUNT:
        # Whole units of the cents the purchases still count for (`net_cents`): read from the
        # member's purchases index alone on PostgreSQL.
        stmt = select(func.coalesce(func.sum(Purchase.net_cents), 0) / 100).where(
            Purchase.member_id == member_id, *_within(Purchase.occurred_at, start, end)
        )
    elif metric is ChallengeMetric.REFERRAL_COUNT:
        stmt = select(func.count(Member.id)).where(
            Member.referred_by_id == member_id,
            Member.referral_rewarded_at.is_not(None),
            *_within(Member.referral_rewarded_at, start, end),
        )
    elif metric is ChallengeMetric.POINTS_EARNED:
        stmt = select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
            LedgerEntry.member_id == member_id,
            LedgerEntry.kind.in_(_EARNED_KINDS),
            LedgerEntry.status != EntryStatus.VOIDED,
            *_within(LedgerEntry.created_at, start, end),
        )
    else:
        kind = (
            EntryKind.REVIEW if metric is ChallengeMetric.REVIEW_COUNT else EntryKind.SOCIAL_SHARE
        )
        stmt = select(func.count(LedgerEntry.id)).where(
            LedgerEntry.member_id == member_id,
            LedgerEntry.kind == kind,
            LedgerEntry.status != EntryStatus.VOIDED,
            *_within(LedgerEntry.created_at, start, end),
        )
    value = await session.scalar(stmt)
    return max(int(value or 0), 0)


async def anyone_counted(
    session: AsyncSession, metric: ChallengeMetric, *, start: datetime, end: datetime | None
) -> bool:
    """Whether anything `metric` counts happened in [start, end), for any member: what
    `metric_value` would find for someone, asked once for everybody."""
    found: Select[Any]
    if metric in (ChallengeMetric.PURCHASE_COUNT, ChallengeMetric.PURCHASE_AMOUNT):
        found = select(Purchase.id).where(
            Purchase.refunded_amount < Purchase.amount, *_within(Purchase.occurred_at, start, end)
        )
    elif metric is ChallengeMetric.REFERRAL_COUNT:
        found = select(Member.id).where(
            Member.referred_by_id.is_not(None),
            Member.referral_rewarded_at.is_not(None),
            *_within(Member.referral_rewarded_at, start, end),
        )
    else:
        kinds: dict[ChallengeMetric, list[EntryKind]] = {
            ChallengeMetric.POINTS_EARNED: list(_EARNED_KINDS),
            ChallengeMetric.REVIEW_COUNT: [EntryKind.REVIEW],
            ChallengeMetric.SOCIAL_SHARE_COUNT: [EntryKind.SOCIAL_SHARE],
        }
        found = select(LedgerEntry.id).where(
            LedgerEntry.kind.in_(kinds[metric]),
            LedgerEntry.status != EntryStatus.VOIDED,
            LedgerEntry.points > 0 if metric is ChallengeMetric.POINTS_EARNED else true(),
            *_within(LedgerEntry.created_at, start, end),
        )
    return bool(await session.scalar(select(found.exists())))
