"""Targeting at the service level: a segment-targeted promotion pays its segment's members and
nobody else, with membership decided in the write (as of before the purchase) on the general
path and on PostgreSQL's direct path alike; targeted rewards and challenges exist only for the
segment; early access opens a reward to its audience before its public start."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import ChallengeMetric, EntryKind, LedgerEntry
from models.engine import session_factory
from services import redemptions, segments
from services.clock import ManualClock
from services.errors import NotEligible, NotFound
from services.gamification.challenges import create_challenge
from services.program import create_promotion, create_tier
from tests.services.helpers import configure, fund, new_member, new_reward, rows_of
from tests.services.test_direct_purchases import Direct, catalog, general, written

BUYERS = {"all": [{"purchaseCount": {"lastDays": 30, "min": 1}}]}


async def segment(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    rule: dict[str, Any],
    name: str = "Buyers",
) -> int:
    async with sessions.begin() as session:
        return (await segments.create_segment(session, name=name, rule=rule, now=clock.now())).id


async def targeted_promotion(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock, segment_id: int
) -> int:
    async with sessions.begin() as session:
        return (
            await create_promotion(
                session,
                name="Buyers earn x3",
                multiplier=3,
                starts_at=clock.now() - timedelta(hours=1),
                ends_at=clock.now() + timedelta(days=7),
                segment_id=segment_id,
            )
        ).id


async def purchase_points(sessions: async_sessionmaker[AsyncSession], member_id: int) -> list[int]:
    async with sessions() as session:
        entries = await rows_of(session, LedgerEntry, member_id)
    return [e.points for e in entries if e.kind is EntryKind.PURCHASE]


async def test_a_segment_promotion_pays_its_members_and_nobody_else(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, points_per_currency_unit=1, pending_days=0)
    ann, bob = await new_member(sessions, clock, "ann"), await new_member(sessions, clock, "bob")
    await general(sessions, clock, ann, "ann-0", 10.0)  # before the promotion: ann is a buyer
    await targeted_promotion(sessions, clock, await segment(sessions, clock, BUYERS))

    clock.advance(timedelta(minutes=1))
    await general(sessions, clock, ann, "ann-1", 10.0)
    await general(sessions, clock, bob, "bob-1", 10.0)
    assert await purchase_points(sessions, ann) == [10, 30]
    # bob was no buyer before this purchase: membership is decided as of before it.
    assert await purchase_points(sessions, bob) == [10]

    # bob's purchase made him a buyer: his next one earns the promotion.
    clock.advance(timedelta(minutes=1))
    await general(sessions, clock, bob, "bob-2", 10.0)
    assert await purchase_points(sessions, bob) == [10, 30]


async def test_the_direct_path_pays_a_segment_promotion_as_the_general_path_does(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    await configure(sessions, points_per_currency_unit=1, pending_days=0)
    ann, bob = await new_member(sessions, clock, "ann"), await new_member(sessions, clock, "bob")
    await targeted_promotion(sessions, clock, await segment(sessions, clock, BUYERS))
    direct = Direct(pg, clock)
    for n, amount in enumerate([10.0, 20.0, 5.5]):
        clock.advance(timedelta(minutes=1))
        await general(sessions, clock, ann, f"ann-{n}", amount)
        # A running segment promotion never makes the direct path leave the work.
        assert await direct.record(bob, f"bob-{n}", amount) is not None
    assert await purchase_points(sessions, bob) == [10, 60, 16]
    assert await written(sessions, ann) == await written(sessions, bob)


async def test_the_direct_path_sees_a_segment_rule_change_at_once(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    await configure(sessions, points_per_currency_unit=1, pending_days=0)
    ann = await new_member(sessions, clock, "ann")
    rich = await segment(sessions, clock, {"all": [{"availablePoints": {"min": 1000}}]}, "Rich")
    await targeted_promotion(sessions, clock, rich)
    direct = Direct(pg, clock)
    stale = await catalog(sessions, clock)
    assert await direct.record(ann, "o-1", 10.0, catalog=stale) is not None
    async with sessions.begin() as session:
        row = await segments.locked_segment(session, rich)
        everyone = {"all": [{"availablePoints": {"min": 0}}]}
        await segments.update_segment(session, row, name=None, rule=everyone, now=clock.now())
    # The cached catalog still holds the old rule: the write declines rather than use it.
    assert await direct.record(ann, "o-2", 10.0, catalog=stale) is None
    assert await direct.record(ann, "o-2", 10.0) is not None
    assert await purchase_points(sessions, ann) == [10, 30]


async def test_a_targeted_reward_is_not_found_outside_its_segment(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, points_per_currency_unit=1, pending_days=0)
    ann, bob = await new_member(sessions, clock, "ann"), await new_member(sessions, clock, "bob")
    await general(sessions, clock, ann, "ann-0", 100.0)
    await fund(sessions, clock, bob, 100)
    reward = await new_reward(sessions, clock, segment_id=await segment(sessions, clock, BUYERS))

    async def redeem(member_id: int) -> None:
        async with sessions.begin() as session:
            await redemptions.redeem(
                session,
                member_id=member_id,
                reward_id=reward,
                idempotency_key=f"k-{member_id}",
                now=clock.now(),
                actor="test",
            )

    with pytest.raises(NotFound):
        await redeem(bob)
    await redeem(ann)


async def test_an_early_access_reward_opens_to_gold_members_before_everyone(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, points_per_currency_unit=1, pending_days=0)
    async with sessions.begin() as session:
        gold = (
            await create_tier(session, name="Gold", threshold=100, multiplier=1, benefits=[])
        ).id
    ann, bob = await new_member(sessions, clock, "ann"), await new_member(sessions, clock, "bob")
    await general(sessions, clock, ann, "ann-0", 200.0)  # Gold by what she earned
    await fund(sessions, clock, bob, 200)  # an adjustment never moves tiers
    now = clock.now()
    reward = await new_reward(
        sessions,
        clock,
        starts_at=now + timedelta(days=2),
        early_access_starts_at=now - timedelta(hours=1),
        early_access_tier_id=gold,
    )

    async def redeem(member_id: int, key: str) -> None:
        async with sessions.begin() as session:
            await redemptions.redeem(
                session,
                member_id=member_id,
                reward_id=reward,
                idempotency_key=key,
                now=clock.now(),
                actor="test",
            )

    await redeem(ann, "ann-early")
    with pytest.raises(NotEligible):
        await redeem(bob, "bob-early")
    clock.advance(timedelta(days=2))
    await redeem(bob, "bob-public")


async def test_only_segment_members_make_progress_on_a_targeted_challenge(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, points_per_currency_unit=1, pending_days=0)
    ann, bob = await new_member(sessions, clock, "ann"), await new_member(sessions, clock, "bob")
    await fund(sessions, clock, ann, 100)
    rich = await segment(sessions, clock, {"all": [{"availablePoints": {"min": 100}}]}, "Rich")
    async with sessions.begin() as session:
        await create_challenge(
            session,
            name="Buy once",
            description="",
            metric=ChallengeMetric.PURCHASE_COUNT,
            goal=1,
            reward_points=50,
            badge_id=None,
            starts_at=clock.now() - timedelta(hours=1),
            ends_at=None,
            recurrence=None,
            now=clock.now(),
            segment_id=rich,
        )
    clock.advance(timedelta(minutes=1))
    await general(sessions, clock, ann, "ann-1", 10.0)
    await general(sessions, clock, bob, "bob-1", 10.0)
    async with sessions() as session:
        paid = await session.scalars(
            select(LedgerEntry.member_id).where(LedgerEntry.kind == EntryKind.CHALLENGE)
        )
        assert list(paid) == [ann]


async def test_an_early_access_segment_opens_a_reward_to_its_members_only(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, points_per_currency_unit=1, pending_days=0)
    ann, bob = await new_member(sessions, clock, "ann"), await new_member(sessions, clock, "bob")
    await general(sessions, clock, ann, "ann-0", 100.0)  # a buyer
    await fund(sessions, clock, bob, 100)
    now = clock.now()
    reward = await new_reward(
        sessions,
        clock,
        starts_at=now + timedelta(days=1),
        early_access_starts_at=now,
        early_access_segment_id=await segment(sessions, clock, BUYERS),
    )
    outcomes = {}
    for member_id in (ann, bob):
        try:
            async with sessions.begin() as session:
                await redemptions.redeem(
                    session,
                    member_id=member_id,
                    reward_id=reward,
                    idempotency_key="early",
                    now=clock.now(),
                    actor="test",
                )
            outcomes[member_id] = "redeemed"
        except NotEligible:
            outcomes[member_id] = "not eligible"
    assert outcomes == {ann: "redeemed", bob: "not eligible"}
