"""Purchases earn exactly once; refunds reverse in proportion, never more than was earned."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import EntryKind, EntryStatus, LedgerEntry, Member
from models.engine import session_factory
from services.clock import ManualClock
from services.errors import IdempotencyConflict, Invalid, NotFound
from services.ledger.entries import lock_member, settle
from services.ledger.purchases import LedgerResult, record_purchase, refund_purchase
from services.members import enroll
from services.program import create_promotion, create_tier
from tests.services.helpers import assert_balances_match_ledger, configure, fund, new_member


async def purchase(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    member_id: int,
    order_id: str,
    amount: float,
) -> LedgerResult:
    async with sessions.begin() as session:
        return await record_purchase(
            session, member_id=member_id, order_id=order_id, amount=amount, now=clock.now()
        )


async def refund(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    order_id: str,
    refund_id: str,
    amount: float | None,
) -> LedgerResult:
    async with sessions.begin() as session:
        return await refund_purchase(
            session, order_id=order_id, refund_id=refund_id, amount=amount, now=clock.now()
        )


async def count_entries(sessions: async_sessionmaker[AsyncSession], kind: EntryKind) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).where(LedgerEntry.kind == kind)) or 0)


async def test_points_are_floored_once_and_breakdown_adds_up(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, points_per_currency_unit=1.5)
    async with sessions.begin() as session:
        await create_tier(session, name="Gold", threshold=10, multiplier=1.25, benefits=[])
        await create_promotion(
            session,
            name="Double points",
            multiplier=2,
            starts_at=clock.now() - timedelta(days=1),
            ends_at=clock.now() + timedelta(days=1),
        )
    member_id = await new_member(sessions, clock)
    await purchase(sessions, clock, member_id, "o-1", 10)  # 15 points, reaches Gold
    result = await purchase(sessions, clock, member_id, "o-2", 33.33)
    # 33.33 x 1.5 x 1.25 x 2 = 124.9875 -> 124, one floor at the end
    assert result.entry.points == 124
    assert sum(c["points"] for c in result.entry.breakdown) == 124
    assert [c["label"] for c in result.entry.breakdown] == [
        "1.5 points per 1.00 USD spent",
        "Gold tier x1.25",
        "Double points x2",
    ]
    await assert_balances_match_ledger(sessions, member_id)


async def test_same_order_sent_twenty_times_at_once_credits_once(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    member_id = await new_member(sessions, clock)
    results = await asyncio.gather(
        *(purchase(sessions, clock, member_id, "order-1", 80) for _ in range(20))
    )
    assert {r.entry.id for r in results} == {results[0].entry.id}
    assert {r.entry.points for r in results} == {80}
    assert await count_entries(sessions, EntryKind.PURCHASE) == 1
    member = await assert_balances_match_ledger(sessions, member_id)
    assert member.available == 80


async def test_same_order_with_other_input_is_a_conflict_and_writes_nothing(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    member_id = await new_member(sessions, clock)
    await purchase(sessions, clock, member_id, "order-1", 80)
    with pytest.raises(IdempotencyConflict):
        await purchase(sessions, clock, member_id, "order-1", 81)
    assert await count_entries(sessions, EntryKind.PURCHASE) == 1


@pytest.mark.parametrize("amount", [-1, float("nan"), float("inf"), 1e12])
async def test_bad_amounts_are_refused_and_write_nothing(
    engine: AsyncEngine, clock: ManualClock, amount: float
) -> None:
    sessions = session_factory(engine)
    member_id = await new_member(sessions, clock)
    with pytest.raises(Invalid):
        await purchase(sessions, clock, member_id, "order-1", amount)
    assert await count_entries(sessions, EntryKind.PURCHASE) == 0


async def test_concurrent_refunds_with_one_refund_id_reverse_once(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    member_id = await new_member(sessions, clock)
    await purchase(sessions, clock, member_id, "order-1", 100)
    results = await asyncio.gather(
        *(refund(sessions, clock, "order-1", "refund-1", 40) for _ in range(10))
    )
    assert {r.entry.id for r in results} == {results[0].entry.id}
    assert await count_entries(sessions, EntryKind.REVERSAL) == 1
    member = await assert_balances_match_ledger(sessions, member_id)
    assert member.available == 60


async def test_partial_refunds_beyond_the_order_never_reverse_more_than_earned(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    member_id = await new_member(sessions, clock)
    await purchase(sessions, clock, member_id, "order-1", 99.99)  # 99 points
    reversed_points = 0
    for i, amount in enumerate([33.33, 33.33, 50]):  # the last one goes past the order
        result = await refund(sessions, clock, "order-1", f"refund-{i}", amount)
        reversed_points -= result.entry.points
    assert reversed_points == 99
    # nothing is left to refund: a further refund is refused and writes nothing
    with pytest.raises(Invalid):
        await refund(sessions, clock, "order-1", "refund-late", None)
    assert await count_entries(sessions, EntryKind.REVERSAL) == 3
    member = await assert_balances_match_ledger(sessions, member_id)
    assert member.available == 0
    assert member.qualifying_points == 0


async def test_refund_after_points_were_spent_stops_at_zero_and_reports_the_shortfall(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    member_id = await new_member(sessions, clock)
    await purchase(sessions, clock, member_id, "order-1", 100)
    await fund(sessions, clock, member_id, -70)
    result = await refund(sessions, clock, "order-1", "refund-1", None)
    assert result.entry.points == -30
    assert result.entry.breakdown[-1] == {"label": "Already spent, not recovered", "points": 70}
    assert sum(c["points"] for c in result.entry.breakdown) == -30
    member = await assert_balances_match_ledger(sessions, member_id)
    assert member.available == 0


async def test_refund_inside_the_return_window_cancels_pending_points_only(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, pending_days=14)
    member_id = await new_member(sessions, clock)
    await fund(sessions, clock, member_id, 500)
    await purchase(sessions, clock, member_id, "order-1", 100)
    result = await refund(sessions, clock, "order-1", "refund-1", 25)
    assert result.entry.status is EntryStatus.PENDING
    member = await assert_balances_match_ledger(sessions, member_id)
    assert (member.available, member.pending) == (500, 75)
    # when the window closes, what is left of the purchase becomes available
    clock.advance(timedelta(days=15))
    async with sessions.begin() as session:
        await settle(session, await lock_member(session, member_id), clock.now())
    member = await assert_balances_match_ledger(sessions, member_id)
    assert (member.available, member.pending) == (575, 0)


async def test_refund_of_an_unknown_order_is_not_found(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    with pytest.raises(NotFound):
        await refund(sessions, clock, "nope", "refund-1", None)


async def test_referral_pays_both_sides_on_the_first_purchase_only(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, referral_bonus=250)
    referrer_id = await new_member(sessions, clock, "rita")
    async with sessions() as session:
        referrer = await session.get(Member, referrer_id)
        assert referrer is not None
        code = referrer.referral_code
    async with sessions.begin() as session:
        friend = await enroll(
            session,
            email="fred@example.com",
            display_name="Fred",
            referral_code=code.lower(),
            now=clock.now(),
        )
    await purchase(sessions, clock, friend.id, "order-1", 10)
    await purchase(sessions, clock, friend.id, "order-2", 10)
    assert await count_entries(sessions, EntryKind.REFERRAL) == 2
    assert (await assert_balances_match_ledger(sessions, referrer_id)).available == 250
    assert (await assert_balances_match_ledger(sessions, friend.id)).available == 270
