"""Tier placement by qualifying points: points *earned* inside the program's window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    QUALIFYING_KINDS,
    EntryStatus,
    EventKind,
    LedgerEntry,
    Member,
    MemberEvent,
    Program,
    Tier,
)
from services.events import record_tier_change, touched
from services.program import tier_for


@dataclass(frozen=True, slots=True)
class TierChange:
    member_id: int
    from_tier_id: int
    to_tier_id: int


async def windowed_qualifying_points(
    session: AsyncSession, member_id: int, program: Program, now: datetime
) -> int:
    assert program.tier_window_days is not None
    since = now - timedelta(days=program.tier_window_days)
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
            LedgerEntry.member_id == member_id,
            LedgerEntry.kind.in_(QUALIFYING_KINDS),
            LedgerEntry.status != EntryStatus.VOIDED,
            LedgerEntry.created_at > since,
        )
    )
    return int(total or 0)


async def refresh_tier(
    session: AsyncSession,
    member: Member,
    program: Program,
    tiers: Sequence[Tier],
    now: datetime,
) -> TierChange | None:
    """Place the member by its qualifying points; called after every earn and reversal.

    With no window the cached figure is kept exact by `post`; with one, old points fall out
    of it over time, so it is recomputed from the ledger.
    """
    if program.tier_window_days is not None:
        await session.flush()
        member.qualifying_points = await windowed_qualifying_points(
            session, member.id, program, now
        )
    tier = tier_for(member.qualifying_points, tiers)
    if tier.id == member.tier_id:
        return None
    change = TierChange(member.id, member.tier_id, tier.id)
    member.tier_id = tier.id
    record_tier_change(session, member.id, change.from_tier_id, change.to_tier_id, now)
    return change


async def recompute_all(session: AsyncSession, program: Program, now: datetime) -> int:
    """Recompute every member's qualifying points and tier, in two set-based statements
    (after a change of tiers or of the window). Returns how many members changed tier."""
    qualifying = select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
        LedgerEntry.member_id == Member.id,
        LedgerEntry.kind.in_(QUALIFYING_KINDS),
        LedgerEntry.status != EntryStatus.VOIDED,
    )
    if program.tier_window_days is not None:
        since = now - timedelta(days=program.tier_window_days)
        qualifying = qualifying.where(LedgerEntry.created_at > since)
    await session.execute(
        update(Member).values(qualifying_points=qualifying.scalar_subquery()),
        execution_options={"synchronize_session": False},
    )
    best_tier = (
        select(Tier.id)
        .where(Tier.threshold <= Member.qualifying_points)
        .order_by(Tier.threshold.desc())
        .limit(1)
        .scalar_subquery()
    )
    moves = (
        await session.execute(
            select(Member.id, Member.tier_id, best_tier).where(Member.tier_id != best_tier)
        )
    ).all()
    if not moves:
        return 0
    await session.execute(
        insert(MemberEvent),
        [
            {
                "member_id": member_id,
                "kind": EventKind.TIER_CHANGED,
                "data": {"from": from_tier, "to": to_tier},
                "created_at": now,
            }
            for member_id, from_tier, to_tier in moves
        ],
    )
    touched(session, [member_id for member_id, _, _ in moves])
    await session.execute(
        update(Member).where(Member.tier_id != best_tier).values(tier_id=best_tier),
        execution_options={"synchronize_session": False},
    )
    return len(moves)
