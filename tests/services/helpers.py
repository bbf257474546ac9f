"""Small builders and the ledger's invariants, shared by the service tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from models import QUALIFYING_KINDS, EntryKind, EntryStatus, LedgerEntry, Member, RewardKind
from services import members, rewards
from services.clock import ManualClock
from services.direct.writer import DirectWriter
from services.leaderboards.periods import Period, period_end, period_key, period_start
from services.ledger.adjustments import adjust_points
from services.program import update_program

Row = TypeVar("Row", bound=Any)


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


async def new_reward(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock, **terms: Any
) -> int:
    """A reward costing 60 points with no limits, unless `terms` say otherwise."""
    given: dict[str, Any] = {
        "name": "Free coffee",
        "description": "",
        "kind": RewardKind.FREE_PRODUCT,
        "cost": 60,
        "value": None,
        "partner_id": None,
        "minimum_tier_id": None,
        "stock": None,
        "starts_at": None,
        "ends_at": None,
        "per_member_limit": None,
        "settlement_amount": None,
        **terms,
    }
    async with sessions.begin() as session:
        return (await rewards.create_reward(session, **given, now=clock.now())).id


def listened_writer(engine: AsyncEngine) -> tuple[DirectWriter, list[frozenset[int]]]:
    """The direct paths on a PostgreSQL engine, and the list of what they told the bus."""
    told: list[frozenset[int]] = []
    writer = DirectWriter.on(engine, told.append)
    assert writer is not None, "direct paths run on PostgreSQL only"
    return writer, told


async def rows_of(session: AsyncSession, model: type[Row], member_id: int) -> list[Row]:
    """A member's rows of `model`, oldest first."""
    found = await session.scalars(
        select(model).where(model.member_id == member_id).order_by(model.id)
    )
    return list(found)


def cached_balances(member: Member) -> tuple[Any, ...]:
    """Every figure a write keeps on the member row."""
    return (
        member.tier_id,
        member.available,
        member.pending,
        member.lifetime_earned,
        member.redeemed,
        member.expired,
        member.qualifying_points,
        member.earned_points,
        member.month_key,
        member.month_points,
        member.week_key,
        member.week_points,
        member.next_settlement_at,
        member.last_purchase_at,
    )


async def restate_scores(session: AsyncSession, now: datetime) -> None:
    """For entries inserted around the ledger's own code: set every member's leaderboard
    scores (all time, this month, this week) to the sums of its entries, as `post` keeps
    them (and so, through the triggers, the boards' counts)."""

    def earned(*inside: ColumnElement[bool]) -> Any:
        return (
            select(func.coalesce(func.sum(LedgerEntry.points), 0))
            .where(
                LedgerEntry.member_id == Member.id,
                LedgerEntry.kind.in_(QUALIFYING_KINDS),
                LedgerEntry.status != EntryStatus.VOIDED,
                *inside,
            )
            .scalar_subquery()
        )

    def inside(period: Period) -> list[ColumnElement[bool]]:
        start, end = period_start(period, now), period_end(period, now)
        assert start is not None and end is not None
        return [LedgerEntry.created_at >= start, LedgerEntry.created_at < end]

    await session.execute(
        update(Member).values(
            earned_points=earned(),
            month_key=period_key(Period.MONTHLY, now),
            month_points=earned(*inside(Period.MONTHLY)),
            week_key=period_key(Period.WEEKLY, now),
            week_points=earned(*inside(Period.WEEKLY)),
        )
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
