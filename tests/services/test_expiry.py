"""Pending points activate on time, lots expire on time, spending takes the soonest-expiring."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from models import EntryKind, EntryStatus, LedgerEntry
from models.engine import session_factory
from services.clock import ManualClock
from services.ledger.purchases import record_purchase
from services.ledger.sweeps import sweep
from tests.services.helpers import assert_balances_match_ledger, configure, fund, new_member


async def test_sweep_activates_and_expires_on_time_and_twice_writes_nothing(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, pending_days=10, expiry_days=30)
    member_id = await new_member(sessions, clock)
    async with sessions.begin() as session:
        await record_purchase(
            session, member_id=member_id, order_id="o-1", amount=100, now=clock.now()
        )

    # inside the window, the points are pending
    clock.advance(timedelta(days=9))
    await sweep(sessions, clock.now())
    member = await assert_balances_match_ledger(sessions, member_id)
    assert (member.available, member.pending) == (0, 100)

    # the window closes: available
    clock.advance(timedelta(days=1))
    await sweep(sessions, clock.now())
    member = await assert_balances_match_ledger(sessions, member_id)
    assert (member.available, member.pending) == (100, 0)

    # 30 days after becoming available, they expire
    clock.advance(timedelta(days=30))
    first = await sweep(sessions, clock.now())
    member = await assert_balances_match_ledger(sessions, member_id)
    assert (member.available, member.expired) == (0, 100)
    assert first.members_settled == 1

    # a second sweep writes nothing
    async with sessions() as session:
        before = await session.scalar(select(func.count()).select_from(LedgerEntry))
    second = await sweep(sessions, clock.now())
    async with sessions() as session:
        after = await session.scalar(select(func.count()).select_from(LedgerEntry))
    assert second.members_settled == 0
    assert before == after


async def test_spending_draws_the_soonest_expiring_lots_first(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, expiry_days=30)
    member_id = await new_member(sessions, clock)

    async def earn(order: str, amount: int) -> None:
        async with sessions.begin() as session:
            await record_purchase(
                session, member_id=member_id, order_id=order, amount=amount, now=clock.now()
            )

    await earn("old", 50)  # expires on day 30
    clock.advance(timedelta(days=10))
    await earn("new", 50)  # expires on day 40
    await fund(sessions, clock, member_id, -60)
    # the old lot is used up, 40 of the new one remain
    async with sessions() as session:
        lots = {
            e.reference: e.remaining
            for e in await session.scalars(
                select(LedgerEntry).where(LedgerEntry.kind == EntryKind.PURCHASE)
            )
        }
    assert lots == {"old": 0, "new": 40}

    # day 30: nothing left to expire from the old lot; day 40: the 40 expire
    clock.advance(timedelta(days=21))
    await sweep(sessions, clock.now())
    member = await assert_balances_match_ledger(sessions, member_id)
    assert (member.available, member.expired) == (40, 0)
    clock.advance(timedelta(days=10))
    await sweep(sessions, clock.now())
    member = await assert_balances_match_ledger(sessions, member_id)
    assert (member.available, member.expired) == (0, 40)
    async with sessions() as session:
        expirations = list(
            await session.scalars(
                select(LedgerEntry).where(LedgerEntry.kind == EntryKind.EXPIRATION)
            )
        )
    assert [(e.points, e.status) for e in expirations] == [(-40, EntryStatus.POSTED)]


async def test_points_that_activate_and_expire_between_two_sweeps_expire_in_one(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # found by the ledger model: activation and expiry both due at the same sweep
    sessions = session_factory(engine)
    await configure(sessions, pending_days=3, expiry_days=10)
    member_id = await new_member(sessions, clock)
    async with sessions.begin() as session:
        await record_purchase(session, member_id=member_id, order_id="o", amount=1, now=clock.now())
    clock.advance(timedelta(days=13))
    await sweep(sessions, clock.now())
    member = await assert_balances_match_ledger(sessions, member_id)
    assert (member.available, member.pending, member.expired) == (0, 0, 1)
    assert member.next_settlement_at is None


async def test_a_spend_across_many_lots_takes_them_in_expiry_order(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given 50 lots of 3 points, each expiring a day after the one before
    sessions = session_factory(engine)
    await configure(sessions, expiry_days=365)
    member_id = await new_member(sessions, clock)
    for _ in range(50):
        await fund(sessions, clock, member_id, 3)
        clock.advance(timedelta(days=1))

    # when 100 points are spent (34 lots' worth: more than one batch of lots is read)
    await fund(sessions, clock, member_id, -100)

    # then the 33 soonest-expiring lots are empty, the 34th has 2 left, the rest are whole
    async with sessions() as session:
        remaining = list(
            await session.scalars(
                select(LedgerEntry.remaining)
                .where(LedgerEntry.member_id == member_id, LedgerEntry.kind == EntryKind.ADJUSTMENT)
                .where(LedgerEntry.points > 0)
                .order_by(LedgerEntry.expires_at, LedgerEntry.id)
            )
        )
    assert remaining == [0] * 33 + [2] + [3] * 16
    member = await assert_balances_match_ledger(sessions, member_id)
    assert member.available == 150 - 100
