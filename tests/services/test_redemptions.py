"""Redemptions: stock and balances never below zero under any concurrency, idempotent by key,
eligibility refusals write nothing, and cancelling gives points (with their expiries) and stock
back exactly once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import EntryKind, LedgerEntry, Redemption, RedemptionStatus, Reward
from models.engine import session_factory
from services import redemptions
from services.clock import ManualClock
from services.direct import redemptions as direct_redemptions
from services.direct.writer import DirectWriter
from services.errors import DomainError, ErrorCode
from services.ledger.entries import lock_member, settle
from services.program import create_tier
from services.redemptions import RedemptionResult
from tests.services.helpers import (
    assert_balances_match_ledger,
    configure,
    fund,
    member_row,
    new_member,
    new_reward,
)

Sessions = async_sessionmaker[AsyncSession]


async def _redeem(
    sessions: Sessions, clock: ManualClock, member_id: int, reward_id: int, key: str
) -> RedemptionResult | ErrorCode:
    try:
        async with sessions.begin() as session:
            return await redemptions.redeem(
                session,
                member_id=member_id,
                reward_id=reward_id,
                idempotency_key=key,
                now=clock.now(),
                actor=f"member:{member_id}",
            )
    except DomainError as error:
        return error.code


@dataclass(frozen=True)
class Granted:
    """A granted redemption, from either path."""

    redemption_id: int
    code: str | None
    entry_id: int
    member_id: int
    replayed: bool


@pytest.fixture(params=["general", "direct first"])
def direct(request: pytest.FixtureRequest, pg: AsyncEngine) -> DirectWriter | None:
    """How a concurrency test redeems: the general path alone, or as the API does on
    PostgreSQL: the direct path first, the general one where it declines."""
    return DirectWriter.on(pg, lambda _: None) if request.param == "direct first" else None


async def _redeem_as_the_api_does(
    sessions: Sessions,
    clock: ManualClock,
    direct: DirectWriter | None,
    member_id: int,
    reward_id: int,
    key: str,
) -> Granted | ErrorCode:
    if direct is not None:
        try:
            redeemed = await direct_redemptions.redeem(
                direct,
                member_id=member_id,
                reward_id=reward_id,
                key=key,
                now=clock.now(),
                actor=f"member:{member_id}",
            )
        except DomainError as error:
            return error.code
        if redeemed is not None:
            r = redeemed.redemption
            return Granted(r.id, r.code, redeemed.entry.id, member_id, replayed=False)
    outcome = await _redeem(sessions, clock, member_id, reward_id, key)
    if isinstance(outcome, ErrorCode):
        return outcome
    r2 = outcome.redemption
    return Granted(r2.id, r2.code, r2.entry_id, member_id, outcome.replayed)


async def _count(sessions: Sessions, *conditions: object) -> int:
    async with sessions() as session:
        return int(
            await session.scalar(select(func.count()).select_from(LedgerEntry).where(*conditions))  # type: ignore[arg-type]
            or 0
        )


async def _stock(sessions: Sessions, reward_id: int) -> int | None:
    async with sessions() as session:
        return await session.scalar(select(Reward.stock).where(Reward.id == reward_id))


async def test_hundred_members_race_for_the_last_unit(
    pg: AsyncEngine, clock: ManualClock, direct: DirectWriter | None
) -> None:
    # given one unit left and 100 funded members
    sessions = session_factory(pg)
    reward_id = await new_reward(sessions, clock, stock=1)
    members = [await new_member(sessions, clock, f"m{i}") for i in range(100)]
    for member_id in members:
        await fund(sessions, clock, member_id, 100)

    # when they all redeem it at once
    outcomes = await asyncio.gather(
        *(
            _redeem_as_the_api_does(sessions, clock, direct, m, reward_id, f"last-unit-{m}")
            for m in members
        )
    )

    # then exactly one gets it, the others are told it is out of stock, and one debit was made
    winners = [o for o in outcomes if isinstance(o, Granted)]
    assert len(winners) == 1
    assert outcomes.count(ErrorCode.OUT_OF_STOCK) == 99
    assert await _stock(sessions, reward_id) == 0
    assert await _count(sessions, LedgerEntry.kind == EntryKind.REDEMPTION) == 1
    for member_id in members:
        member = await assert_balances_match_ledger(sessions, member_id)
        assert member.available == (40 if member_id == winners[0].member_id else 100)


async def test_fifty_concurrent_redemptions_spend_a_balance_once(
    pg: AsyncEngine, clock: ManualClock, direct: DirectWriter | None
) -> None:
    # given 100 points and 50 redemptions costing 60, each with its own key
    sessions = session_factory(pg)
    reward_id = await new_reward(sessions, clock, cost=60)
    member_id = await new_member(sessions, clock)
    await fund(sessions, clock, member_id, 100)
    observed: list[int] = []
    done = asyncio.Event()

    async def watch() -> None:
        # Reads the committed balance while the redemptions run: never below zero.
        while not done.is_set():
            observed.append((await member_row(sessions, member_id)).available)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    outcomes = await asyncio.gather(
        *(
            _redeem_as_the_api_does(sessions, clock, direct, member_id, reward_id, f"spend-{i}")
            for i in range(50)
        )
    )
    done.set()
    await watcher

    # then one succeeds, the balance ends at 40 and was never seen below zero
    assert sum(isinstance(o, Granted) for o in outcomes) == 1
    assert outcomes.count(ErrorCode.INSUFFICIENT_POINTS) == 49
    assert observed and min(observed) >= 0
    member = await assert_balances_match_ledger(sessions, member_id)
    assert member.available == 40
    assert member.redeemed == 60


async def test_one_key_sent_twenty_times_redeems_once(
    pg: AsyncEngine, clock: ManualClock, direct: DirectWriter | None
) -> None:
    sessions = session_factory(pg)
    reward_id = await new_reward(sessions, clock, cost=10, stock=5)
    other_reward = await new_reward(sessions, clock, name="Tea", cost=10)
    member_id = await new_member(sessions, clock)
    await fund(sessions, clock, member_id, 1000)

    outcomes = await asyncio.gather(
        *(
            _redeem_as_the_api_does(sessions, clock, direct, member_id, reward_id, "same-key")
            for _ in range(20)
        )
    )

    results = [o for o in outcomes if isinstance(o, Granted)]
    assert len(results) == 20, outcomes
    assert len({(r.redemption_id, r.code, r.entry_id) for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert await _count(sessions, LedgerEntry.kind == EntryKind.REDEMPTION) == 1
    assert await _stock(sessions, reward_id) == 4
    member = await assert_balances_match_ledger(sessions, member_id)
    assert member.available == 990

    # the same key for another reward is a conflict, and writes nothing
    conflict = await _redeem_as_the_api_does(
        sessions, clock, direct, member_id, other_reward, "same-key"
    )
    assert conflict is ErrorCode.IDEMPOTENCY_CONFLICT
    assert (await member_row(sessions, member_id)).available == 990


async def test_keys_are_scoped_to_the_member(engine: AsyncEngine, clock: ManualClock) -> None:
    sessions = session_factory(engine)
    reward_id = await new_reward(sessions, clock, cost=10)
    ann, bob = await new_member(sessions, clock, "ann"), await new_member(sessions, clock, "bob")
    await fund(sessions, clock, ann, 100)
    await fund(sessions, clock, bob, 100)
    first = await _redeem(sessions, clock, ann, reward_id, "k")
    second = await _redeem(sessions, clock, bob, reward_id, "k")
    assert isinstance(first, RedemptionResult) and isinstance(second, RedemptionResult)
    assert first.redemption.id != second.redemption.id
    assert (await member_row(sessions, bob)).available == 90


@pytest.mark.parametrize(
    ("terms", "expected"),
    [
        ({"starts_at_days": 1}, ErrorCode.NOT_ELIGIBLE),
        ({"ends_at_days": 0}, ErrorCode.NOT_ELIGIBLE),
        ({"gold_only": True}, ErrorCode.NOT_ELIGIBLE),
        ({"cost": 101}, ErrorCode.INSUFFICIENT_POINTS),
        ({"stock": 0}, ErrorCode.OUT_OF_STOCK),
    ],
)
async def test_refusals_write_nothing(
    engine: AsyncEngine, clock: ManualClock, terms: dict[str, object], expected: ErrorCode
) -> None:
    sessions = session_factory(engine)
    member_id = await new_member(sessions, clock)
    await fund(sessions, clock, member_id, 100)
    spec: dict[str, object] = {"cost": terms.get("cost", 50)}
    if "starts_at_days" in terms:
        spec["starts_at"] = clock.now() + timedelta(days=1)
    if "ends_at_days" in terms:
        spec["ends_at"] = clock.now()
    if "stock" in terms:
        spec["stock"] = terms["stock"]
    if terms.get("gold_only"):
        async with sessions.begin() as session:
            gold = await create_tier(
                session, name="Gold", threshold=5000, multiplier=1.5, benefits=[]
            )
        spec["minimum_tier_id"] = gold.id
    reward_id = await new_reward(sessions, clock, **spec)
    entries_before = await _count(sessions)

    outcome = await _redeem(sessions, clock, member_id, reward_id, "try")

    assert outcome is expected
    assert await _count(sessions) == entries_before
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Redemption)) == 0
    member = await assert_balances_match_ledger(sessions, member_id)
    assert member.available == 100
    # the key was not used up by the refusal: the same key works once the reason is gone
    if expected is ErrorCode.INSUFFICIENT_POINTS:
        await fund(sessions, clock, member_id, 1)
        assert isinstance(
            await _redeem(sessions, clock, member_id, reward_id, "try"), RedemptionResult
        )


async def test_per_member_limit_counts_all_but_cancelled(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    reward_id = await new_reward(sessions, clock, cost=10, per_member_limit=2)
    member_id = await new_member(sessions, clock)
    await fund(sessions, clock, member_id, 100)
    first = await _redeem(sessions, clock, member_id, reward_id, "1")
    assert isinstance(first, RedemptionResult)
    assert isinstance(await _redeem(sessions, clock, member_id, reward_id, "2"), RedemptionResult)
    assert await _redeem(sessions, clock, member_id, reward_id, "3") is ErrorCode.LIMIT_REACHED
    async with sessions.begin() as session:
        await redemptions.cancel(
            session, redemption_id=first.redemption.id, now=clock.now(), actor="service"
        )
    assert isinstance(await _redeem(sessions, clock, member_id, reward_id, "4"), RedemptionResult)
    member = await assert_balances_match_ledger(sessions, member_id)
    assert member.available == 80


async def _cancel(sessions: Sessions, clock: ManualClock, redemption_id: int) -> bool:
    async with sessions.begin() as session:
        result = await redemptions.cancel(
            session, redemption_id=redemption_id, now=clock.now(), actor="service"
        )
    return not result.replayed


async def test_cancel_sent_twice_at_once_returns_points_and_stock_once(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    reward_id = await new_reward(sessions, clock, cost=60, stock=3)
    member_id = await new_member(sessions, clock)
    await fund(sessions, clock, member_id, 100)
    redeemed = await _redeem(sessions, clock, member_id, reward_id, "r")
    assert isinstance(redeemed, RedemptionResult)
    assert await _stock(sessions, reward_id) == 2

    cancelled = await asyncio.gather(
        *(_cancel(sessions, clock, redeemed.redemption.id) for _ in range(5))
    )

    assert cancelled.count(True) == 1
    assert await _stock(sessions, reward_id) == 3
    member = await assert_balances_match_ledger(sessions, member_id)
    assert (member.available, member.redeemed) == (100, 0)
    returns = await _count(
        sessions, LedgerEntry.kind == EntryKind.REDEMPTION, LedgerEntry.points > 0
    )
    assert returns == 1
    async with sessions() as session:
        row = await session.get(Redemption, redeemed.redemption.id)
        assert row is not None and row.status is RedemptionStatus.CANCELLED


async def test_used_vouchers_cannot_be_used_again_or_cancelled(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    reward_id = await new_reward(sessions, clock, cost=10)
    member_id = await new_member(sessions, clock)
    await fund(sessions, clock, member_id, 100)
    redeemed = await _redeem(sessions, clock, member_id, reward_id, "r")
    assert isinstance(redeemed, RedemptionResult) and redeemed.redemption.code is not None
    async with sessions.begin() as session:
        found = await redemptions.find_by_code(session, redeemed.redemption.code.lower())
        used = await redemptions.use(session, redemption_id=found, now=clock.now())
    assert used.redemption.status is RedemptionStatus.USED
    with pytest.raises(DomainError) as used_again:
        async with sessions.begin() as session:
            await redemptions.use(session, redemption_id=found, now=clock.now())
    with pytest.raises(DomainError) as cancelled:
        async with sessions.begin() as session:
            await redemptions.cancel(session, redemption_id=found, now=clock.now(), actor="svc")
    assert used_again.value.code is cancelled.value.code is ErrorCode.NOT_ELIGIBLE
    assert (await assert_balances_match_ledger(sessions, member_id)).available == 90


async def test_cancelling_returns_points_with_the_expiries_they_had(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given two lots: 50 expiring on day 30, 100 expiring on day 40
    sessions = session_factory(engine)
    await configure(sessions, expiry_days=30)
    start = clock.now()
    member_id = await new_member(sessions, clock)
    await fund(sessions, clock, member_id, 50)
    clock.advance(timedelta(days=10))
    await fund(sessions, clock, member_id, 100)
    reward_id = await new_reward(sessions, clock, cost=80)

    # when 80 are redeemed (50 from the soonest lot, 30 from the other) and then cancelled
    redeemed = await _redeem(sessions, clock, member_id, reward_id, "r")
    assert isinstance(redeemed, RedemptionResult)
    assert await _cancel(sessions, clock, redeemed.redemption.id)

    # then the points come back as new lots with the same expiries, never later ones
    async with sessions() as session:
        returned = (
            await session.execute(
                select(LedgerEntry.points, LedgerEntry.expires_at)
                .where(LedgerEntry.kind == EntryKind.REDEMPTION, LedgerEntry.points > 0)
                .order_by(LedgerEntry.expires_at)
            )
        ).all()
    assert [(p, at) for p, at in returned] == [
        (50, start + timedelta(days=30)),
        (30, start + timedelta(days=40)),
    ]
    member = await assert_balances_match_ledger(sessions, member_id)
    assert member.available == 150

    # and on day 30 the returned 50 expire, as the original lot would have
    clock.set(start + timedelta(days=30))
    async with sessions.begin() as session:
        await settle(session, await lock_member(session, member_id), clock.now())
    member = await assert_balances_match_ledger(sessions, member_id)
    assert (member.available, member.expired) == (100, 50)


async def test_cancelling_after_the_expiry_passed_expires_the_points_at_once(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, expiry_days=10)
    member_id = await new_member(sessions, clock)
    await fund(sessions, clock, member_id, 100)
    reward_id = await new_reward(sessions, clock, cost=100)
    redeemed = await _redeem(sessions, clock, member_id, reward_id, "r")
    assert isinstance(redeemed, RedemptionResult)
    clock.advance(timedelta(days=20))

    assert await _cancel(sessions, clock, redeemed.redemption.id)

    member = await assert_balances_match_ledger(sessions, member_id)
    assert (member.available, member.redeemed, member.expired) == (0, 0, 100)
