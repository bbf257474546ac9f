"""Challenges and badges: progress counts each metric inside the challenge's window from what
the ledger, purchases and members tables already record; reaching a goal pays once (once per
period for recurring challenges), however many writes cross it together; badges are held once,
whether a challenge or a threshold awarded them; balances stay equal to the ledger."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import (
    Badge,
    Challenge,
    ChallengeCompletion,
    ChallengeMetric,
    EntryKind,
    EventKind,
    LedgerEntry,
    Member,
    MemberBadge,
    MemberEvent,
    Recurrence,
    Tier,
)
from models.engine import session_factory
from services import members
from services.catalog import load_catalog
from services.clock import ManualClock
from services.errors import DomainError, ErrorCode
from services.gamification import badges, challenges
from services.gamification.progress import metric_value
from services.ledger.activity import record_activity
from services.ledger.purchases import LedgerResult, record_purchase, refund_purchase
from services.program import catalog_version, create_tier
from tests.conftest import START
from tests.services.helpers import assert_balances_match_ledger, configure, new_member

Sessions = async_sessionmaker[AsyncSession]
_unique = itertools.count(1)
NEVER = 1_000_000  # a goal no test reaches: the challenge only shows progress


# -- builders ------------------------------------------------------------------------------
async def new_badge(
    sessions: Sessions,
    clock: ManualClock,
    name: str,
    *,
    metric: ChallengeMetric | None = None,
    threshold: int | None = None,
) -> int:
    async with sessions.begin() as session:
        badge = await badges.create_badge(
            session,
            name=name,
            description=f"{name} badge",
            image_url=None,
            metric=metric,
            threshold=threshold,
            now=clock.now(),
        )
    return badge.id


async def new_challenge(
    sessions: Sessions,
    clock: ManualClock,
    metric: ChallengeMetric,
    goal: int,
    *,
    reward_points: int = 100,
    badge_id: int | None = None,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    recurrence: Recurrence | None = None,
    name: str | None = None,
) -> int:
    async with sessions.begin() as session:
        challenge = await challenges.create_challenge(
            session,
            name=name or f"{metric.value.lower()} x{goal} #{next(_unique)}",
            description="",
            metric=metric,
            goal=goal,
            reward_points=reward_points,
            badge_id=badge_id,
            starts_at=starts_at or clock.now() - timedelta(days=1),
            ends_at=ends_at,
            recurrence=recurrence,
            now=clock.now(),
        )
    return challenge.id


async def purchase(
    sessions: Sessions,
    clock: ManualClock,
    member_id: int,
    amount: float = 10,
    *,
    order_id: str | None = None,
    occurred_at: datetime | None = None,
) -> LedgerResult:
    async with sessions.begin() as session:
        return await record_purchase(
            session,
            member_id=member_id,
            order_id=order_id or f"order-{next(_unique)}",
            amount=amount,
            now=clock.now(),
            occurred_at=occurred_at,
        )


async def refund(
    sessions: Sessions, clock: ManualClock, order_id: str, amount: float | None = None
) -> None:
    async with sessions.begin() as session:
        await refund_purchase(
            session,
            order_id=order_id,
            refund_id=f"refund-{next(_unique)}",
            amount=amount,
            now=clock.now(),
        )


async def activity(sessions: Sessions, clock: ManualClock, member_id: int, kind: EntryKind) -> None:
    async with sessions.begin() as session:
        await record_activity(
            session,
            member_id=member_id,
            kind=kind,
            reference=f"{kind.value.lower()}-{next(_unique)}",
            now=clock.now(),
        )


async def referred_member(sessions: Sessions, clock: ManualClock, referrer: int, name: str) -> int:
    async with sessions() as session:
        code = await session.scalar(select(Member.referral_code).where(Member.id == referrer))
    async with sessions.begin() as session:
        member = await members.enroll(
            session,
            email=f"{name}@example.com",
            display_name=name.title(),
            now=clock.now(),
            referral_code=code,
        )
    return member.id


# -- what was written ----------------------------------------------------------------------
@dataclass(frozen=True)
class Shown:
    progress: int
    completed_at: datetime | None


async def shown(sessions: Sessions, clock: ManualClock, member_id: int) -> dict[int, Shown]:
    """The member's progress in each running challenge, by challenge id, as of the clock."""
    now = clock.now()
    async with sessions() as session:
        states = await challenges.progress(
            session, member_id, await challenges.running(session, now), now
        )
    return {s.challenge.id: Shown(s.progress, s.completed_at) for s in states}


async def completions(sessions: Sessions, member_id: int) -> list[tuple[int, datetime]]:
    """(challenge id, period start) of each completion of the member, oldest first."""
    async with sessions() as session:
        rows = await session.execute(
            select(ChallengeCompletion.challenge_id, ChallengeCompletion.period_start)
            .where(ChallengeCompletion.member_id == member_id)
            .order_by(ChallengeCompletion.id)
        )
        return [(challenge_id, start) for challenge_id, start in rows]


async def challenge_entries(sessions: Sessions, member_id: int) -> list[tuple[int, str | None]]:
    """(points, reference) of each CHALLENGE entry of the member, oldest first."""
    async with sessions() as session:
        rows = await session.execute(
            select(LedgerEntry.points, LedgerEntry.reference)
            .where(LedgerEntry.member_id == member_id, LedgerEntry.kind == EntryKind.CHALLENGE)
            .order_by(LedgerEntry.id)
        )
        return [(points, reference) for points, reference in rows]


async def held(sessions: Sessions, member_id: int) -> list[int]:
    """The badge ids the member holds (each once, or the list shows it twice)."""
    async with sessions() as session:
        return list(
            await session.scalars(
                select(MemberBadge.badge_id)
                .where(MemberBadge.member_id == member_id)
                .order_by(MemberBadge.id)
            )
        )


async def events(sessions: Sessions, member_id: int, kind: EventKind) -> list[int]:
    """The badge or challenge id of each such event of the member, in order."""
    key = "badge" if kind is EventKind.BADGE_AWARDED else "challenge"
    async with sessions() as session:
        rows = await session.scalars(
            select(MemberEvent.data)
            .where(MemberEvent.member_id == member_id, MemberEvent.kind == kind)
            .order_by(MemberEvent.id)
        )
        return [int(data[key]) for data in rows]


async def count_metric(
    sessions: Sessions,
    member_id: int,
    metric: ChallengeMetric,
    start: datetime | None = None,
    end: datetime | None = None,
) -> int:
    async with sessions() as session:
        return await metric_value(session, member_id, metric, start=start, end=end)


# -- concurrency (PostgreSQL: real row locks across connections) ----------------------------
async def test_ten_concurrent_purchases_crossing_the_goal_complete_it_once(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    # given a 3-purchase challenge paying 50 points and a badge, and a 5-purchase threshold badge
    sessions = session_factory(pg)
    finisher = await new_badge(sessions, clock, "Finisher")
    regular = await new_badge(
        sessions, clock, "Regular", metric=ChallengeMetric.PURCHASE_COUNT, threshold=5
    )
    challenge = await new_challenge(
        sessions, clock, ChallengeMetric.PURCHASE_COUNT, 3, reward_points=50, badge_id=finisher
    )
    ann = await new_member(sessions, clock)

    # when ten purchases are recorded for the member at once, each in its own transaction
    results = await asyncio.gather(*(purchase(sessions, clock, ann, 10) for _ in range(10)))

    # then one completion, one CHALLENGE entry, each badge once, one event of each
    assert len({r.entry.id for r in results}) == 10
    assert await completions(sessions, ann) == [(challenge, START - timedelta(days=1))]
    assert await challenge_entries(sessions, ann) == [
        (50, f"challenge:{challenge}:{(START - timedelta(days=1)):%Y-%m-%d}")
    ]
    assert sorted(await held(sessions, ann)) == sorted([finisher, regular])
    assert await events(sessions, ann, EventKind.CHALLENGE_COMPLETED) == [challenge]
    assert sorted(await events(sessions, ann, EventKind.BADGE_AWARDED)) == sorted(
        [finisher, regular]
    )
    member = await assert_balances_match_ledger(sessions, ann)
    assert member.available == 10 * 10 + 50
    assert (await shown(sessions, clock, ann))[challenge] == Shown(3, clock.now())


async def test_concurrent_first_purchases_of_referred_members_pay_the_referrer_once(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    # given a 3-referral challenge, and a referrer whose eight friends enrolled with its code
    sessions = session_factory(pg)
    await configure(sessions, referral_bonus=5)
    challenge = await new_challenge(
        sessions, clock, ChallengeMetric.REFERRAL_COUNT, 3, reward_points=70
    )
    ann = await new_member(sessions, clock)
    friends = [await referred_member(sessions, clock, ann, f"friend{n}") for n in range(8)]

    # when they all make their first purchase at once
    await asyncio.gather(*(purchase(sessions, clock, friend, 10) for friend in friends))

    # then the referrer completed once and earned the referral bonus eight times
    assert await completions(sessions, ann) == [(challenge, START - timedelta(days=1))]
    assert [points for points, _ in await challenge_entries(sessions, ann)] == [70]
    assert await count_metric(sessions, ann, ChallengeMetric.REFERRAL_COUNT) == 8
    member = await assert_balances_match_ledger(sessions, ann)
    assert member.available == 8 * 5 + 70
    for friend in friends:
        assert await completions(sessions, friend) == []
        await assert_balances_match_ledger(sessions, friend)


async def test_concurrent_badges_of_one_name_create_one(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)

    async def attempt() -> int | ErrorCode:
        try:
            return await new_badge(sessions, clock, "Twin")
        except DomainError as error:
            return error.code

    outcomes = await asyncio.gather(*(attempt() for _ in range(6)))

    assert sorted(o for o in outcomes if isinstance(o, ErrorCode)) == [ErrorCode.ALREADY_EXISTS] * 5
    async with sessions() as session:
        assert list(await session.scalars(select(Badge.name))) == ["Twin"]
        assert await catalog_version(session) == 1  # bumped by the one that was created


# -- windows and refunds --------------------------------------------------------------------
async def test_progress_ignores_activity_outside_the_window(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given a 2-purchase challenge running from tomorrow for two days
    sessions = session_factory(engine)
    opens, closes = START + timedelta(days=1), START + timedelta(days=3)
    challenge = await new_challenge(
        sessions, clock, ChallengeMetric.PURCHASE_COUNT, 2, starts_at=opens, ends_at=closes
    )
    ann = await new_member(sessions, clock)

    # a purchase before it opens: not running yet, nothing to show, nothing counted
    await purchase(sessions, clock, ann)
    assert await shown(sessions, clock, ann) == {}

    # once open: a purchase reported now that happened before it opened does not count
    clock.set(opens + timedelta(hours=1))
    await purchase(sessions, clock, ann, occurred_at=opens - timedelta(hours=2))
    assert await shown(sessions, clock, ann) == {challenge: Shown(0, None)}
    await purchase(sessions, clock, ann)
    assert await shown(sessions, clock, ann) == {challenge: Shown(1, None)}

    # after it closed: another purchase completes nothing
    clock.set(closes)
    await purchase(sessions, clock, ann)
    assert await shown(sessions, clock, ann) == {}
    assert await completions(sessions, ann) == []
    assert await challenge_entries(sessions, ann) == []
    assert await count_metric(sessions, ann, ChallengeMetric.PURCHASE_COUNT, opens, closes) == 1
    assert await count_metric(sessions, ann, ChallengeMetric.PURCHASE_COUNT) == 4


async def test_a_refund_lowers_purchase_based_progress(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    count = await new_challenge(sessions, clock, ChallengeMetric.PURCHASE_COUNT, 3)
    amount = await new_challenge(sessions, clock, ChallengeMetric.PURCHASE_AMOUNT, 100)
    ann = await new_member(sessions, clock)
    await purchase(sessions, clock, ann, 30, order_id="a")
    await purchase(sessions, clock, ann, 45.50, order_id="b")
    assert await shown(sessions, clock, ann) == {count: Shown(2, None), amount: Shown(75, None)}

    await refund(sessions, clock, "a")  # full: the purchase no longer counts at all
    assert await shown(sessions, clock, ann) == {count: Shown(1, None), amount: Shown(45, None)}

    await refund(sessions, clock, "b", 20.25)  # partial: still a purchase, for 25.25
    assert await shown(sessions, clock, ann) == {count: Shown(1, None), amount: Shown(25, None)}
    await assert_balances_match_ledger(sessions, ann)


async def test_a_completed_challenge_is_not_paid_again_after_a_refund_and_a_new_purchase(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given a completed 2-purchase challenge
    sessions = session_factory(engine)
    badge = await new_badge(sessions, clock, "Twice")
    challenge = await new_challenge(
        sessions, clock, ChallengeMetric.PURCHASE_COUNT, 2, reward_points=100, badge_id=badge
    )
    ann = await new_member(sessions, clock)
    await purchase(sessions, clock, ann, 20, order_id="first")
    await purchase(sessions, clock, ann, 20, order_id="second")
    completed_at = clock.now()
    assert await shown(sessions, clock, ann) == {challenge: Shown(2, completed_at)}

    # when one purchase is refunded, then another one brings the count back to the goal
    clock.advance(timedelta(hours=1))
    await refund(sessions, clock, "second")
    assert await shown(sessions, clock, ann) == {challenge: Shown(2, completed_at)}
    clock.advance(timedelta(hours=1))
    await purchase(sessions, clock, ann, 20, order_id="third")

    # then it stays completed as it was, paid and badged once
    assert await shown(sessions, clock, ann) == {challenge: Shown(2, completed_at)}
    assert len(await completions(sessions, ann)) == 1
    assert [points for points, _ in await challenge_entries(sessions, ann)] == [100]
    assert await held(sessions, ann) == [badge]
    assert await events(sessions, ann, EventKind.CHALLENGE_COMPLETED) == [challenge]
    assert await events(sessions, ann, EventKind.BADGE_AWARDED) == [badge]
    member = await assert_balances_match_ledger(sessions, ann)
    assert member.available == 20 + 20 + 100  # the refund reversed the second purchase's 20


# -- what each metric counts ----------------------------------------------------------------
async def test_each_metric_counts_what_it_should(engine: AsyncEngine, clock: ManualClock) -> None:
    sessions = session_factory(engine)
    await configure(sessions, review_points=7, social_share_points=3, referral_bonus=20)
    ids = {
        metric: await new_challenge(sessions, clock, metric, NEVER) for metric in ChallengeMetric
    }
    # a review challenge that completes at once, paying 1,000 points POINTS_EARNED ignores
    quick = await new_challenge(
        sessions, clock, ChallengeMetric.REVIEW_COUNT, 1, reward_points=1000
    )
    ann = await new_member(sessions, clock)
    bob = await referred_member(sessions, clock, ann, "bob")
    await referred_member(sessions, clock, ann, "cat")  # never buys: not a referral yet

    await purchase(sessions, clock, ann, 40, order_id="a")  # 40 points
    await purchase(sessions, clock, ann, 25.75, order_id="b")  # 25 points
    await purchase(sessions, clock, ann, 5, order_id="c")  # 5 points
    await refund(sessions, clock, "a", 10.30)  # reverses floor(40 x 10.30 / 40) = 10 points
    await refund(sessions, clock, "c")  # reverses 5: no longer a purchase at all
    await activity(sessions, clock, ann, EntryKind.REVIEW)
    await activity(sessions, clock, ann, EntryKind.REVIEW)
    await activity(sessions, clock, ann, EntryKind.SOCIAL_SHARE)
    assert (await shown(sessions, clock, ann))[ids[ChallengeMetric.REFERRAL_COUNT]].progress == 0
    await purchase(sessions, clock, bob, 12)  # bob's first: pays both 20 and counts for ann
    await purchase(sessions, clock, bob, 12)  # a second purchase is no second referral

    progress = {c: s.progress for c, s in (await shown(sessions, clock, ann)).items()}
    assert progress == {
        ids[ChallengeMetric.PURCHASE_COUNT]: 2,
        ids[ChallengeMetric.PURCHASE_AMOUNT]: 55,  # 40 - 10.30 + 25.75 = 55.45 whole units
        ids[ChallengeMetric.REVIEW_COUNT]: 2,
        ids[ChallengeMetric.SOCIAL_SHARE_COUNT]: 1,
        ids[ChallengeMetric.REFERRAL_COUNT]: 1,
        ids[ChallengeMetric.POINTS_EARNED]: 40 + 25 + 5 - 10 - 5 + 2 * 7 + 3 + 20,
        quick: 1,
    }
    assert [points for points, _ in await challenge_entries(sessions, ann)] == [1000]
    member = await assert_balances_match_ledger(sessions, ann)
    assert member.available == 40 + 25 + 5 - 10 - 5 + 2 * 7 + 3 + 20 + 1000
    # bob's own counts: two purchases, the referral bonus he earned, no referrals of his own
    bobs = {c: s.progress for c, s in (await shown(sessions, clock, bob)).items()}
    assert bobs[ids[ChallengeMetric.PURCHASE_COUNT]] == 2
    assert bobs[ids[ChallengeMetric.POINTS_EARNED]] == 12 + 12 + 20
    assert bobs[ids[ChallengeMetric.REFERRAL_COUNT]] == 0


async def test_purchase_amount_counts_cents_exactly_before_dropping_them(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # 3.30 - 0.30 is 2.9999999999999996 in binary floating point: it must still count 3
    sessions = session_factory(engine)
    amount = await new_challenge(sessions, clock, ChallengeMetric.PURCHASE_AMOUNT, 3)
    ann = await new_member(sessions, clock)
    await purchase(sessions, clock, ann, 3.30, order_id="a")
    await refund(sessions, clock, "a", 0.30)
    await purchase(sessions, clock, ann, 0.10, order_id="b")  # 3.10 net, the goal of 3 reached
    assert await count_metric(sessions, ann, ChallengeMetric.PURCHASE_AMOUNT) == 3
    assert (await shown(sessions, clock, ann))[amount] == Shown(3, clock.now())


async def test_reviews_and_shares_complete_their_challenges_through_record_activity(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, review_points=5, social_share_points=2)
    reviews = await new_challenge(
        sessions, clock, ChallengeMetric.REVIEW_COUNT, 2, reward_points=30
    )
    shares = await new_challenge(
        sessions, clock, ChallengeMetric.SOCIAL_SHARE_COUNT, 1, reward_points=15
    )
    ann = await new_member(sessions, clock)

    await activity(sessions, clock, ann, EntryKind.REVIEW)
    await purchase(sessions, clock, ann, 10)  # neither a review nor a share
    assert await completions(sessions, ann) == []
    await activity(sessions, clock, ann, EntryKind.SOCIAL_SHARE)
    await activity(sessions, clock, ann, EntryKind.REVIEW)

    assert [c for c, _ in await completions(sessions, ann)] == [shares, reviews]
    assert [points for points, _ in await challenge_entries(sessions, ann)] == [15, 30]
    member = await assert_balances_match_ledger(sessions, ann)
    assert member.available == 5 + 10 + 2 + 5 + 15 + 30


async def test_a_referral_counts_when_the_referred_members_first_purchase_is_recorded(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given a one-referral challenge (and no referral bonus: the referral still counts)
    sessions = session_factory(engine)
    challenge = await new_challenge(
        sessions, clock, ChallengeMetric.REFERRAL_COUNT, 1, reward_points=40
    )
    ann = await new_member(sessions, clock)

    # enrolling with ann's code is not yet a referral
    bob = await referred_member(sessions, clock, ann, "bob")
    assert (await shown(sessions, clock, ann))[challenge] == Shown(0, None)

    # bob's first purchase is, and completes ann's challenge (not bob's)
    clock.advance(timedelta(minutes=5))
    await purchase(sessions, clock, bob, 10)
    assert (await shown(sessions, clock, ann))[challenge] == Shown(1, clock.now())
    assert (await shown(sessions, clock, bob))[challenge] == Shown(0, None)
    assert await challenge_entries(sessions, ann) == [
        (40, f"challenge:{challenge}:{(START - timedelta(days=1)):%Y-%m-%d}")
    ]
    assert await challenge_entries(sessions, bob) == []
    await assert_balances_match_ledger(sessions, ann)
    await assert_balances_match_ledger(sessions, bob)


async def test_points_earned_completes_but_challenge_points_never_count_towards_it(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, review_points=50)
    first = await new_challenge(
        sessions, clock, ChallengeMetric.POINTS_EARNED, 100, reward_points=500
    )
    second = await new_challenge(sessions, clock, ChallengeMetric.POINTS_EARNED, 150)
    ann = await new_member(sessions, clock)

    await purchase(sessions, clock, ann, 60)
    assert await completions(sessions, ann) == []
    await activity(sessions, clock, ann, EntryKind.REVIEW)  # 110 earned: the first completes

    state = await shown(sessions, clock, ann)
    assert state[first] == Shown(100, clock.now())
    assert state[second] == Shown(110, None)  # the 500 challenge points are not "earned"
    member = await assert_balances_match_ledger(sessions, ann)
    assert member.available == 60 + 50 + 500


async def test_the_referrers_referral_bonus_completes_its_points_earned_challenge(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, referral_bonus=20)
    challenge = await new_challenge(
        sessions, clock, ChallengeMetric.POINTS_EARNED, 20, reward_points=10
    )
    ann = await new_member(sessions, clock)
    bob = await referred_member(sessions, clock, ann, "bob")

    await purchase(sessions, clock, bob, 1)  # ann earns her 20-point referral bonus

    assert await count_metric(sessions, ann, ChallengeMetric.POINTS_EARNED) == 20
    assert (await shown(sessions, clock, ann))[challenge] == Shown(20, clock.now())


async def test_a_signup_bonus_that_reaches_a_points_earned_goal_completes_it(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, signup_bonus=100)
    challenge = await new_challenge(
        sessions, clock, ChallengeMetric.POINTS_EARNED, 100, reward_points=10
    )
    ann = await new_member(sessions, clock)
    assert (await shown(sessions, clock, ann))[challenge] == Shown(100, clock.now())


# -- recurring challenges ---------------------------------------------------------------------
async def test_a_weekly_challenge_completes_again_next_week_and_never_twice_in_one(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given a weekly 2-purchase challenge (START is Monday 2026-01-05)
    sessions = session_factory(engine)
    challenge = await new_challenge(
        sessions,
        clock,
        ChallengeMetric.PURCHASE_COUNT,
        2,
        reward_points=25,
        starts_at=START - timedelta(days=30),
        recurrence=Recurrence.WEEKLY,
    )
    ann = await new_member(sessions, clock)
    week1 = datetime(2026, 1, 5, tzinfo=UTC)
    week2 = week1 + timedelta(days=7)

    # four purchases in the first week: completed once
    for _ in range(4):
        await purchase(sessions, clock, ann)
        clock.advance(timedelta(days=1))
    assert clock.now() < week2
    assert await completions(sessions, ann) == [(challenge, week1)]
    assert (await shown(sessions, clock, ann))[challenge] == Shown(2, START + timedelta(days=1))

    # the next week starts afresh
    clock.set(week2 + timedelta(hours=1))
    assert (await shown(sessions, clock, ann))[challenge] == Shown(0, None)
    await purchase(sessions, clock, ann)
    assert (await shown(sessions, clock, ann))[challenge] == Shown(1, None)
    await purchase(sessions, clock, ann)
    await purchase(sessions, clock, ann)

    assert await completions(sessions, ann) == [(challenge, week1), (challenge, week2)]
    assert await challenge_entries(sessions, ann) == [
        (25, f"challenge:{challenge}:2026-01-05"),
        (25, f"challenge:{challenge}:2026-01-12"),
    ]
    assert await events(sessions, ann, EventKind.CHALLENGE_COMPLETED) == [challenge, challenge]
    member = await assert_balances_match_ledger(sessions, ann)
    assert member.available == 7 * 10 + 2 * 25


@pytest.mark.parametrize(
    ("recurrence", "now", "period"),
    [
        (None, datetime(2026, 3, 4, 9, tzinfo=UTC), ("2026-01-01", "2026-06-01")),
        (Recurrence.WEEKLY, datetime(2026, 3, 4, 9, tzinfo=UTC), ("2026-03-02", "2026-03-09")),
        (Recurrence.WEEKLY, datetime(2026, 1, 2, 9, tzinfo=UTC), ("2026-01-01", "2026-01-05")),
        (Recurrence.WEEKLY, datetime(2026, 5, 31, 9, tzinfo=UTC), ("2026-05-25", "2026-06-01")),
        (Recurrence.MONTHLY, datetime(2026, 2, 28, 23, tzinfo=UTC), ("2026-02-01", "2026-03-01")),
        (Recurrence.MONTHLY, datetime(2026, 5, 1, 0, tzinfo=UTC), ("2026-05-01", "2026-06-01")),
        (Recurrence.MONTHLY, datetime(2025, 12, 31, tzinfo=UTC), None),  # not started
        (Recurrence.MONTHLY, datetime(2026, 6, 1, tzinfo=UTC), None),  # ended
    ],
)
def test_current_period_is_the_week_or_month_clipped_to_the_challenge(
    recurrence: Recurrence | None, now: datetime, period: tuple[str, str] | None
) -> None:
    challenge = Challenge(
        starts_at=datetime(2026, 1, 1, tzinfo=UTC),  # a Thursday
        ends_at=datetime(2026, 6, 1, tzinfo=UTC),
        recurrence=recurrence,
    )
    found = challenges.current_period(challenge, now)
    expected = (
        None
        if period is None
        else tuple(datetime.fromisoformat(day).replace(tzinfo=UTC) for day in period)
    )
    assert found == expected


async def test_a_monthly_challenge_restarts_with_the_month(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    challenge = await new_challenge(
        sessions,
        clock,
        ChallengeMetric.PURCHASE_COUNT,
        1,
        reward_points=5,
        starts_at=START - timedelta(days=1),
        recurrence=Recurrence.MONTHLY,
    )
    ann = await new_member(sessions, clock)
    await purchase(sessions, clock, ann)
    clock.set(datetime(2026, 1, 31, 23, tzinfo=UTC))
    await purchase(sessions, clock, ann)
    clock.set(datetime(2026, 2, 1, 1, tzinfo=UTC))
    await purchase(sessions, clock, ann)
    # January began with the challenge (Jan 4), February on the 1st
    assert await completions(sessions, ann) == [
        (challenge, START - timedelta(days=1)),
        (challenge, datetime(2026, 2, 1, tzinfo=UTC)),
    ]


# -- badges ---------------------------------------------------------------------------------
async def test_a_threshold_badge_is_awarded_once_when_the_lifetime_count_reaches_it(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    loyal = await new_badge(
        sessions, clock, "Loyal", metric=ChallengeMetric.PURCHASE_COUNT, threshold=3
    )
    await new_badge(sessions, clock, "Critic", metric=ChallengeMetric.REVIEW_COUNT, threshold=1)
    ann = await new_member(sessions, clock)

    # lifetime: a purchase from long ago, reported now, counts too
    await purchase(sessions, clock, ann, occurred_at=START - timedelta(days=400))
    await purchase(sessions, clock, ann)
    assert await held(sessions, ann) == []
    clock.advance(timedelta(hours=2))
    await purchase(sessions, clock, ann)
    awarded_at = clock.now()
    assert await held(sessions, ann) == [loyal]

    for _ in range(3):  # and never again
        clock.advance(timedelta(hours=1))
        await purchase(sessions, clock, ann)
    async with sessions() as session:
        rows = list(await session.scalars(select(MemberBadge)))
    assert [(r.member_id, r.badge_id, r.awarded_at) for r in rows] == [(ann, loyal, awarded_at)]
    assert await events(sessions, ann, EventKind.BADGE_AWARDED) == [loyal]
    assert await completions(sessions, ann) == []  # badges are not challenges: no points
    member = await assert_balances_match_ledger(sessions, ann)
    assert member.available == 6 * 10


@pytest.mark.parametrize("first", ["threshold", "challenge"])
async def test_a_badge_earned_both_ways_is_held_once(
    engine: AsyncEngine, clock: ManualClock, first: str
) -> None:
    # given a badge with a purchase threshold, which a purchase challenge also awards
    sessions = session_factory(engine)
    threshold, goal = (1, 2) if first == "threshold" else (2, 1)
    badge = await new_badge(
        sessions, clock, "Shopper", metric=ChallengeMetric.PURCHASE_COUNT, threshold=threshold
    )
    challenge = await new_challenge(
        sessions, clock, ChallengeMetric.PURCHASE_COUNT, goal, reward_points=10, badge_id=badge
    )
    ann = await new_member(sessions, clock)

    # when the member earns it one way, then reaches the other
    await purchase(sessions, clock, ann)
    awarded_at = clock.now()
    assert await held(sessions, ann) == [badge]
    clock.advance(timedelta(hours=1))
    await purchase(sessions, clock, ann)
    await purchase(sessions, clock, ann)

    # then it was awarded once, the first time; the challenge completed (and paid) once
    assert await held(sessions, ann) == [badge]
    async with sessions() as session:
        assert await session.scalar(select(MemberBadge.awarded_at)) == awarded_at
    assert await events(sessions, ann, EventKind.BADGE_AWARDED) == [badge]
    assert await events(sessions, ann, EventKind.CHALLENGE_COMPLETED) == [challenge]
    assert [points for points, _ in await challenge_entries(sessions, ann)] == [10]
    await assert_balances_match_ledger(sessions, ann)


async def test_a_challenge_without_points_still_completes_and_awards_its_badge(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    badge = await new_badge(sessions, clock, "First order")
    challenge = await new_challenge(
        sessions, clock, ChallengeMetric.PURCHASE_COUNT, 1, reward_points=0, badge_id=badge
    )
    ann = await new_member(sessions, clock)
    await purchase(sessions, clock, ann)
    assert await completions(sessions, ann) == [(challenge, START - timedelta(days=1))]
    assert await challenge_entries(sessions, ann) == []
    assert await held(sessions, ann) == [badge]
    member = await assert_balances_match_ledger(sessions, ann)
    assert member.available == 10


# -- the ledger and tiers -------------------------------------------------------------------
async def test_challenge_points_keep_balances_equal_to_the_ledger_and_count_for_the_tier(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given purchase points pending for 14 days, and a Silver tier at 100 points
    sessions = session_factory(engine)
    await configure(sessions, pending_days=14)
    async with sessions.begin() as session:
        await create_tier(session, name="Silver", threshold=100, multiplier=1, benefits=[])
    await new_challenge(sessions, clock, ChallengeMetric.PURCHASE_COUNT, 2, reward_points=90)
    ann = await new_member(sessions, clock)

    await purchase(sessions, clock, ann, 10)
    await purchase(sessions, clock, ann, 10)  # completes: 90 challenge points, posted now

    member = await assert_balances_match_ledger(sessions, ann)
    assert (member.available, member.pending) == (90, 20)
    assert member.qualifying_points == 110
    async with sessions() as session:
        tier = await session.get(Tier, member.tier_id)
    assert tier is not None and tier.name == "Silver"


async def test_a_cached_catalog_from_before_the_first_challenge_is_not_used(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # given a catalog snapshot taken while nothing was gamified (earning skips gamification)
    sessions = session_factory(engine)
    ann = await new_member(sessions, clock)
    async with sessions() as session:
        before = await load_catalog(session, clock.now())
    assert not before.gamified_at(clock.now())

    # when a challenge is created, then a purchase is recorded with the old snapshot
    challenge = await new_challenge(sessions, clock, ChallengeMetric.PURCHASE_COUNT, 1)
    async with sessions.begin() as session:
        await record_purchase(
            session, member_id=ann, order_id="o", amount=10, now=clock.now(), catalog=before
        )

    # then the new catalog version was seen, and the purchase completed the challenge
    assert [c for c, _ in await completions(sessions, ann)] == [challenge]


async def test_only_threshold_badges_and_running_challenges_make_earning_count_for_goals(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    now = clock.now()

    async def gamified_at(at: datetime) -> bool:
        async with sessions() as session:
            catalog = await load_catalog(session, now)
            asked = await challenges.gamified(session, at)
        assert catalog.gamified_at(at) is asked  # the snapshot and the database agree
        return asked

    # a badge that only challenges award, and a challenge that ended: nothing to count for
    await new_badge(sessions, clock, "Handpicked")
    await new_challenge(
        sessions,
        clock,
        ChallengeMetric.PURCHASE_COUNT,
        1,
        starts_at=now - timedelta(days=9),
        ends_at=now - timedelta(days=2),
    )
    assert not await gamified_at(now)
    # a challenge that starts tomorrow counts from then, and until it ends
    await new_challenge(
        sessions,
        clock,
        ChallengeMetric.PURCHASE_COUNT,
        1,
        starts_at=now + timedelta(days=1),
        ends_at=now + timedelta(days=3),
    )
    assert not await gamified_at(now)
    assert await gamified_at(now + timedelta(days=1))
    assert not await gamified_at(now + timedelta(days=3))
    # a badge awarded at a threshold counts for every earn
    await new_badge(sessions, clock, "Regular", metric=ChallengeMetric.PURCHASE_COUNT, threshold=10)
    assert await gamified_at(now)
