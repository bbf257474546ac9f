"""Tier placement by qualifying points: points *earned* inside the program's window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ScalarSelect, case, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

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
    floor = None
    if member.tier_floor_id is not None:
        floor = next((t for t in tiers if t.id == member.tier_floor_id), None) or (
            await session.get(Tier, member.tier_floor_id)
        )
    tier = tier_for(member.qualifying_points, tiers, floor)
    if tier.id == member.tier_id:
        return None
    change = TierChange(member.id, member.tier_id, tier.id)
    member.tier_id = tier.id
    record_tier_change(session, member.id, change.from_tier_id, change.to_tier_id, now)
    return change


def placement(member: Any) -> ScalarSelect[int]:
    """SQL: the live tier `tier_for` places a row of `members` in (its floor included)."""
    floor = aliased(Tier)
    floor_threshold = (
        select(floor.threshold).where(floor.id == member.tier_floor_id).scalar_subquery()
    )
    reached = case(
        (floor_threshold > member.qualifying_points, floor_threshold),
        else_=member.qualifying_points,
    )
    return (
        select(Tier.id)
        # The entry tier (threshold 0) takes whoever reaches no other, negative points too.
        .where(Tier.deleted_at.is_(None), or_(Tier.threshold <= reached, Tier.threshold == 0))
        .order_by(Tier.threshold.desc())
        .limit(1)
        .scalar_subquery()
    )


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
    best_tier = placement(Member)
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


async def move_off(
    session: AsyncSession, tier_ids: Sequence[int], now: datetime
) -> list[TierChange]:
    """Move every member on these (retired) tiers to where `placement` puts them, with a
    TIER_CHANGED event each: one UPDATE per tier, whatever the number of members."""
    changes: list[TierChange] = []
    for tier_id in tier_ids:
        moved = (
            await session.execute(
                update(Member)
                .where(Member.tier_id == tier_id)
                .values(tier_id=placement(Member))
                .returning(Member.id, Member.tier_id),
                execution_options={"synchronize_session": False},
            )
        ).all()
        changes.extend(TierChange(member_id, tier_id, to_tier) for member_id, to_tier in moved)
    if changes:
        await session.execute(
            insert(MemberEvent),
            [
                {
                    "member_id": change.member_id,
                    "kind": EventKind.TIER_CHANGED,
                    "data": {"from": change.from_tier_id, "to": change.to_tier_id},
                    "created_at": now,
                }
                for change in changes
            ],
        )
        touched(session, [change.member_id for change in changes])
    return changes
