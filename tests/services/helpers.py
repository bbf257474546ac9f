"""Small builders and the ledger's invariants, shared by the service tests."""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from models import QUALIFYING_KINDS, EntryKind, EntryStatus, LedgerEntry, Member
from services import members
from services.clock import ManualClock
from services.ledger.adjustments import adjust_points
from services.program import update_program


async def configure(sessions: async_sessionmaker[AsyncSession], **settings: object) -> None:
    async with sessions.begin() as session:
        await update_program(session, settings)


async def new_member(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock, name: str = "ann"
) -> int:
    async with sessions.begin() as session:
        member = await members.enroll(
            session, email=f"{name}@example.com", display_name=name.title(), now=clock.now()
        )
    return member.id


async def fund(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock, member_id: int, points: int
) -> None:
    """An admin adjustment of `points` (negative: spends them, soonest-expiring first)."""
    async with sessions.begin() as session:
        await adjust_points(
            session,
            member_id=member_id,
            points=points,
            reason="test funding",
            idempotency_key=f"fund-{member_id}-{points}-{clock.now().isoformat()}",
            actor="test",
            now=clock.now(),
        )


async def member_row(sessions: async_sessionmaker[AsyncSession], member_id: int) -> Member:
    async with sessions() as session:
        member = await session.get(Member, member_id)
        assert member is not None
        return member


async def assert_balances_match_ledger(
    sessions: async_sessionmaker[AsyncSession], member_id: int
) -> Member:
    """The money-grade invariants: cached balances equal the sums of entries and of lots."""
    async with sessions() as session:
        member = await session.get(Member, member_id)
        assert member is not None

        async def total(
            *conditions: ColumnElement[bool],
            column: InstrumentedAttribute[int] = LedgerEntry.points,
        ) -> int:
            value = await session.scalar(
                select(func.coalesce(func.sum(column), 0)).where(
                    LedgerEntry.member_id == member_id, *conditions
                )
            )
            return int(value or 0)

        posted = await total(LedgerEntry.status == EntryStatus.POSTED)
        pending = await total(LedgerEntry.status == EntryStatus.PENDING)
        assert member.available == posted
        assert member.pending == pending
        assert member.available >= 0 and member.pending >= 0
        assert member.available == await total(
            LedgerEntry.status == EntryStatus.POSTED, column=LedgerEntry.remaining
        )
        assert member.pending == await total(
            LedgerEntry.status == EntryStatus.PENDING, column=LedgerEntry.remaining
        )
        assert member.lifetime_earned == await total(
            LedgerEntry.status == EntryStatus.POSTED, LedgerEntry.kind.in_(QUALIFYING_KINDS)
        )
        assert member.expired == -await total(
            LedgerEntry.status == EntryStatus.POSTED, LedgerEntry.kind == EntryKind.EXPIRATION
        )
        assert member.earned_points == await total(
            LedgerEntry.status != EntryStatus.VOIDED, LedgerEntry.kind.in_(QUALIFYING_KINDS)
        )
        assert member.redeemed == -await total(
            LedgerEntry.status == EntryStatus.POSTED, LedgerEntry.kind == EntryKind.REDEMPTION
        )
        return member
