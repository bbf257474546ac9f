"""Catalog edits at the service level: members a racing write left on a deleted tier are moved
by their next write and by the sweep (set-based, with TierChanged events), and a challenge has
progress exactly when something its metric counts happened since it started. Both backends."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import (
    Challenge,
    ChallengeMetric,
    EntryKind,
    EventKind,
    Member,
    MemberEvent,
    Tier,
)
from services import members
from services.clock import ManualClock
from services.gamification import challenges
from services.gamification.edits import has_progress
from services.ledger.activity import record_activity
from services.ledger.purchases import record_purchase, refund_purchase
from services.ledger.sweeps import RETIRED_LOOKBACK, sweep
from services.program import create_tier, list_tiers
from services.program_edits import delete_tier, locked_tier
from tests.services.helpers import configure, new_member

Sessions = async_sessionmaker[AsyncSession]
_unique = itertools.count(1)


async def retired_tier_with_a_stranded_member(
    sessions: Sessions, clock: ManualClock, *, qualifying_points: int = 0
) -> tuple[int, int, int]:
    """(member, retired tier, entry tier): the tier is deleted while nobody is on it, then a
    write that raced the deletion (it priced with the catalog of before) puts the member on it."""
    member = await new_member(sessions, clock)
    async with sessions.begin() as session:
        gold = await create_tier(session, name="Gold", threshold=300, multiplier=1.5, benefits=[])
        await delete_tier(session, await locked_tier(session, gold.id), clock.now())
        entry = (await list_tiers(session))[0].id
        await session.execute(
            update(Member)
            .where(Member.id == member)
            .values(tier_id=gold.id, qualifying_points=qualifying_points)
        )
    return member, gold.id, entry


async def placed(sessions: Sessions, member_id: int) -> tuple[int, list[dict[str, int]]]:
    """The member's tier and its TierChanged events' data, oldest first."""
    async with sessions() as session:
        tier = await session.scalar(select(Member.tier_id).where(Member.id == member_id))
        events = await session.scalars(
            select(MemberEvent.data)
            .where(MemberEvent.member_id == member_id, MemberEvent.kind == EventKind.TIER_CHANGED)
            .order_by(MemberEvent.id)
        )
        assert tier is not None
        return tier, list(events)


async def test_the_sweep_moves_members_left_on_a_deleted_tier_once(
    sessions: Sessions, clock: ManualClock
) -> None:
    ann, gold, entry = await retired_tier_with_a_stranded_member(sessions, clock)
    clock.advance(timedelta(minutes=1))

    report = await sweep(sessions, clock.now())

    assert await placed(sessions, ann) == (entry, [{"from": gold, "to": entry}])
    assert report.tier_changes is not None
    assert [(c.member_id, c.from_tier_id, c.to_tier_id) for c in report.tier_changes] == [
        (ann, gold, entry)
    ]
    again = await sweep(sessions, clock.now())
    assert again.tier_changes == []
    assert await placed(sessions, ann) == (entry, [{"from": gold, "to": entry}])


async def test_the_sweep_leaves_long_retired_tiers_alone(
    sessions: Sessions, clock: ManualClock
) -> None:
    ann, gold, _ = await retired_tier_with_a_stranded_member(sessions, clock)
    clock.advance(RETIRED_LOOKBACK + timedelta(minutes=1))

    report = await sweep(sessions, clock.now())

    # Beyond the lookback no race can still be landing: the members table is not scanned.
    assert report.tier_changes == []
    assert await placed(sessions, ann) == (gold, [])


async def test_a_member_on_a_deleted_tier_moves_at_its_next_write(
    sessions: Sessions, clock: ManualClock
) -> None:
    ann, gold, entry = await retired_tier_with_a_stranded_member(sessions, clock)

    async with sessions.begin() as session:
        await record_purchase(session, member_id=ann, order_id="o-1", amount=10, now=clock.now())

    assert await placed(sessions, ann) == (entry, [{"from": gold, "to": entry}])


async def test_members_with_negative_qualifying_points_are_moved_to_the_entry_tier(
    sessions: Sessions, clock: ManualClock
) -> None:
    # A refund inside a tier window, of a purchase from before it, leaves fewer than 0.
    ann, gold, entry = await retired_tier_with_a_stranded_member(
        sessions, clock, qualifying_points=-5
    )

    await sweep(sessions, clock.now())

    assert await placed(sessions, ann) == (entry, [{"from": gold, "to": entry}])


async def test_deleting_a_tier_moves_its_members_by_their_points_and_floors(
    sessions: Sessions, clock: ManualClock
) -> None:
    ann, bob = await new_member(sessions, clock, "ann"), await new_member(sessions, clock, "bob")
    async with sessions.begin() as session:
        silver = await create_tier(session, name="Silver", threshold=100, multiplier=1, benefits=[])
        gold = await create_tier(session, name="Gold", threshold=300, multiplier=2, benefits=[])
        await create_tier(session, name="Platinum", threshold=500, multiplier=3, benefits=[])
        # Ann reached Gold by points; Bob holds Gold as an imported floor (fewer points).
        await session.execute(
            update(Member).where(Member.id == ann).values(tier_id=gold.id, qualifying_points=400)
        )
        await session.execute(
            update(Member)
            .where(Member.id == bob)
            .values(tier_id=gold.id, qualifying_points=20, tier_floor_id=gold.id)
        )

    async with sessions.begin() as session:
        moves = await delete_tier(session, await locked_tier(session, gold.id), clock.now())

    # Bob's floor keeps the retired tier's threshold: Silver, not the entry tier.
    assert sorted((m.member_id, m.to_tier_id) for m in moves) == [
        (ann, silver.id),
        (bob, silver.id),
    ]
    assert await placed(sessions, ann) == (silver.id, [{"from": gold.id, "to": silver.id}])
    assert await placed(sessions, bob) == (silver.id, [{"from": gold.id, "to": silver.id}])
    async with sessions() as session:
        retired = await session.get(Tier, gold.id)
    assert retired is not None and retired.deleted_at == clock.now()


async def refer(sessions: Sessions, clock: ManualClock, referrer: int) -> None:
    async with sessions() as session:
        code = await session.scalar(select(Member.referral_code).where(Member.id == referrer))
    async with sessions.begin() as session:
        referred = await members.enroll(
            session,
            email=f"friend{next(_unique)}@example.com",
            display_name="Friend",
            now=clock.now(),
            referral_code=code,
        )
    async with sessions.begin() as session:  # its first purchase counts the referral
        await record_purchase(
            session, member_id=referred.id, order_id=f"r-{next(_unique)}", amount=5, now=clock.now()
        )


@pytest.mark.parametrize("metric", list(ChallengeMetric))
async def test_a_challenge_has_progress_once_anything_its_metric_counts_happened(
    sessions: Sessions, clock: ManualClock, metric: ChallengeMetric
) -> None:
    await configure(sessions, review_points=5, social_share_points=5, referral_bonus=10)
    ann = await new_member(sessions, clock)
    # Before the challenge starts, activity does not count.
    async with sessions.begin() as session:
        await record_purchase(session, member_id=ann, order_id="early", amount=10, now=clock.now())
    clock.advance(timedelta(minutes=1))
    async with sessions.begin() as session:
        challenge = await challenges.create_challenge(
            session,
            name="Goal",
            description="",
            metric=metric,
            goal=1000,
            reward_points=0,
            badge_id=None,
            starts_at=clock.now(),
            ends_at=None,
            recurrence=None,
            now=clock.now(),
        )
    clock.advance(timedelta(minutes=1))

    async def progress() -> bool:
        async with sessions() as session:
            found = await session.get(Challenge, challenge.id)
            assert found is not None
            return await has_progress(session, found, clock.now())

    assert not await progress()
    if metric is ChallengeMetric.REFERRAL_COUNT:
        await refer(sessions, clock, ann)
    elif metric in (ChallengeMetric.REVIEW_COUNT, ChallengeMetric.SOCIAL_SHARE_COUNT):
        kind = (
            EntryKind.REVIEW if metric is ChallengeMetric.REVIEW_COUNT else EntryKind.SOCIAL_SHARE
        )
        async with sessions.begin() as session:
            await record_activity(
                session, member_id=ann, kind=kind, reference="r-1", now=clock.now()
            )
    else:
        async with sessions.begin() as session:
            await record_purchase(
                session, member_id=ann, order_id="o-1", amount=10, now=clock.now()
            )
    assert await progress()


async def test_a_fully_refunded_purchase_is_no_progress_in_a_purchase_count_challenge(
    sessions: Sessions, clock: ManualClock
) -> None:
    ann = await new_member(sessions, clock)
    async with sessions.begin() as session:
        challenge = await challenges.create_challenge(
            session,
            name="Orders",
            description="",
            metric=ChallengeMetric.PURCHASE_COUNT,
            goal=3,
            reward_points=0,
            badge_id=None,
            starts_at=clock.now() - timedelta(days=1),
            ends_at=None,
            recurrence=None,
            now=clock.now(),
        )
        await record_purchase(session, member_id=ann, order_id="o-1", amount=10, now=clock.now())
    async with sessions.begin() as session:
        await refund_purchase(
            session, order_id="o-1", refund_id="rf-1", amount=None, now=clock.now()
        )

    async with sessions() as session:
        found = await session.get(Challenge, challenge.id)
        assert found is not None
        assert not await has_progress(session, found, clock.now())
