"""Activity types at the service level: caps per UTC day, ISO week, calendar month and ever
counted from the ledger, idempotent retries, segments, tier multipliers, inactive types,
suspended members, and the built-ins named by kind or by key."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import ActivityType, EntryKind, LedgerEntry, Member, MemberStatus
from services import activity_types, segments
from services.clock import ManualClock
from services.errors import DomainError, ErrorCode, Invalid, LimitReached, NotEligible, NotFound
from services.ledger.activity import record_activity
from services.ledger.entries import WITHHELD
from services.ledger.purchases import LedgerResult, record_purchase
from services.program import create_tier
from tests.services.helpers import (
    assert_balances_match_ledger,
    configure,
    fund,
    new_member,
)

Sessions = async_sessionmaker[AsyncSession]


async def new_type(sessions: Sessions, clock: ManualClock, **given: Any) -> ActivityType:
    terms: dict[str, Any] = {
        "key": "survey_completed",
        "name": "Survey completed",
        "points": 10,
        "caps": {},
        "segment_id": None,
        "tier_multiplier_applies": False,
        **given,
    }
    async with sessions.begin() as session:
        return await activity_types.create_activity_type(session, now=clock.now(), **terms)


async def award(
    sessions: Sessions,
    clock: ManualClock,
    member_id: int,
    reference: str,
    *,
    key: str | None = "survey_completed",
    kind: EntryKind | None = None,
) -> LedgerResult:
    async with sessions.begin() as session:
        return await record_activity(
            session,
            member_id=member_id,
            reference=reference,
            now=clock.now(),
            kind=kind,
            activity_type=key,
        )


async def entries(sessions: Sessions) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(LedgerEntry)) or 0)


async def refused(
    sessions: Sessions, clock: ManualClock, member_id: int, reference: str, **named: Any
) -> DomainError:
    """The refusal of an award, after checking it wrote nothing."""
    before = await entries(sessions)
    with pytest.raises((LimitReached, NotEligible, Invalid, NotFound)) as caught:
        await award(sessions, clock, member_id, reference, **named)
    assert await entries(sessions) == before
    return caught.value


async def test_caps_count_awards_per_utc_day_iso_week_calendar_month_and_ever(
    sessions: Sessions, clock: ManualClock
) -> None:
    # Given a type capped 2 a day, 3 a week, 5 a month and 7 ever (the clock starts on a Monday)
    caps = {"per_day": 2, "per_week": 3, "per_month": 5, "lifetime": 7}
    await new_type(sessions, clock, caps=caps)
    ann = await new_member(sessions, clock)

    await award(sessions, clock, ann, "a")
    await award(sessions, clock, ann, "b")
    error = await refused(sessions, clock, ann, "c")
    assert (error.code, error.message) == (
        ErrorCode.LIMIT_REACHED,
        "at most 2 'Survey completed' awards a day",
    )
    assert error.field == ["input", "activityType"]

    clock.advance(timedelta(days=1))  # Tuesday: a new day, the same week
    await award(sessions, clock, ann, "c")
    assert "a week" in (await refused(sessions, clock, ann, "d")).message
    clock.set(clock.now().replace(day=11, hour=23, minute=59))  # Sunday: still that ISO week
    assert "a week" in (await refused(sessions, clock, ann, "d")).message

    clock.set(clock.now().replace(day=12, hour=0, minute=0))  # Monday: a new week
    await award(sessions, clock, ann, "d")
    await award(sessions, clock, ann, "e")
    clock.advance(timedelta(days=1))
    assert "a month" in (await refused(sessions, clock, ann, "f")).message

    clock.set(clock.now().replace(month=2, day=2))  # February
    await award(sessions, clock, ann, "f")
    await award(sessions, clock, ann, "g")
    clock.advance(timedelta(days=1))
    assert "ever" in (await refused(sessions, clock, ann, "h")).message

    # Then exactly seven awards were paid, as earned points (like reviews)
    member = await assert_balances_match_ledger(sessions, ann)
    assert (member.available, member.lifetime_earned, member.earned_points) == (70, 70, 70)
    assert member.qualifying_points == 70


async def test_a_retry_with_the_same_reference_answers_the_first_award_even_at_the_cap(
    sessions: Sessions, clock: ManualClock
) -> None:
    await new_type(sessions, clock, caps={"per_day": 1})
    ann = await new_member(sessions, clock)
    first = await award(sessions, clock, ann, "survey-1")

    again = await award(sessions, clock, ann, "survey-1")

    assert again.replayed and again.entry.id == first.entry.id
    assert (again.entry.kind, again.entry.points) == (EntryKind.ACTIVITY, 10)
    assert await entries(sessions) == 1
    # Another member's award of the same reference is its own.
    bob = await new_member(sessions, clock, "bob")
    assert not (await award(sessions, clock, bob, "survey-1")).replayed


async def test_a_segment_restricted_type_pays_only_the_segments_members_at_write_time(
    sessions: Sessions, clock: ManualClock
) -> None:
    async with sessions.begin() as session:
        rich = await segments.create_segment(
            session,
            name="Rich",
            rule={"all": [{"availablePoints": {"min": 100}}]},
            now=clock.now(),
        )
    await new_type(sessions, clock, segment_id=rich.id)
    ann, bob = await new_member(sessions, clock), await new_member(sessions, clock, "bob")
    await fund(sessions, clock, ann, 100)
    await fund(sessions, clock, bob, 99)

    assert (await award(sessions, clock, ann, "s-1")).entry.points == 10
    error = await refused(sessions, clock, bob, "s-1")
    assert error.code is ErrorCode.NOT_ELIGIBLE

    await fund(sessions, clock, bob, 1)  # now in the segment: exact, no stale cache
    assert (await award(sessions, clock, bob, "s-1")).entry.points == 10


async def test_the_tier_multiplier_applies_only_where_the_type_says_floored_and_named(
    sessions: Sessions, clock: ManualClock
) -> None:
    async with sessions.begin() as session:
        await create_tier(session, name="Gold", threshold=100, multiplier=1.5, benefits=[])
    await new_type(sessions, clock, points=15, tier_multiplier_applies=True)
    await new_type(sessions, clock, key="newsletter_signup", name="Newsletter", points=15)
    ann = await new_member(sessions, clock)
    async with sessions.begin() as session:
        await record_purchase(session, member_id=ann, order_id="o-1", amount=100, now=clock.now())

    multiplied = (await award(sessions, clock, ann, "m-1")).entry
    plain = (await award(sessions, clock, ann, "m-1", key="newsletter_signup")).entry

    assert multiplied.points == 22  # floor(15 x 1.5)
    assert multiplied.breakdown == [
        {"label": "Survey completed", "points": 15},
        {"label": "Gold tier x1.5", "points": 7},
    ]
    assert plain.points == 15 and plain.breakdown == [{"label": "Newsletter", "points": 15}]


async def test_an_inactive_type_pays_nothing(sessions: Sessions, clock: ManualClock) -> None:
    row = await new_type(sessions, clock)
    async with sessions.begin() as session:
        locked = await activity_types.locked_activity_type(session, row.id)
        await activity_types.update_activity_type(session, locked, {"active": False})
    ann = await new_member(sessions, clock)

    assert (await refused(sessions, clock, ann, "i-1")).code is ErrorCode.NOT_ELIGIBLE


async def test_a_suspended_member_has_the_award_on_record_with_its_points_withheld(
    sessions: Sessions, clock: ManualClock
) -> None:
    await new_type(sessions, clock)
    ann = await new_member(sessions, clock)
    async with sessions.begin() as session:
        member = await session.get_one(Member, ann)
        member.status = MemberStatus.SUSPENDED

    entry = (await award(sessions, clock, ann, "w-1")).entry

    assert (entry.kind, entry.points) == (EntryKind.ACTIVITY, 0)
    assert entry.breakdown == [
        {"label": "Survey completed", "points": 10},
        {"label": WITHHELD, "points": -10},
    ]


async def test_built_ins_are_paid_alike_by_kind_or_by_key_and_keep_their_kinds(
    sessions: Sessions, clock: ManualClock
) -> None:
    await configure(sessions, review_points=5, social_share_points=3, daily_activity_cap=2)
    ann = await new_member(sessions, clock)

    by_kind = await award(sessions, clock, ann, "r-1", key=None, kind=EntryKind.REVIEW)
    by_key = await award(sessions, clock, ann, "r-1", key="review")
    both = await award(sessions, clock, ann, "r-2", key="review", kind=EntryKind.REVIEW)
    share = await award(sessions, clock, ann, "s-1", key="social_share")

    assert by_key.replayed and by_key.entry.id == by_kind.entry.id  # one review, one award
    assert (by_kind.entry.kind, by_kind.entry.points) == (EntryKind.REVIEW, 5)
    assert (both.entry.kind, share.entry.kind, share.entry.points) == (
        EntryKind.REVIEW,
        EntryKind.SOCIAL_SHARE,
        3,
    )
    # The program's daily cap still holds for the built-ins, whichever way they are named.
    assert (await refused(sessions, clock, ann, "r-3", key="review")).code is (
        ErrorCode.LIMIT_REACHED
    )
    error = await refused(sessions, clock, ann, "x", key="review", kind=EntryKind.SOCIAL_SHARE)
    assert (error.code, error.field) == (ErrorCode.INVALID, ["input", "kind"])
    error = await refused(sessions, clock, ann, "x", key=None)
    assert (error.code, error.field) == (ErrorCode.INVALID, ["input", "activityType"])
    error = await refused(sessions, clock, ann, "x", key="no_such_thing")
    assert (error.code, error.field) == (ErrorCode.NOT_FOUND, ["input", "activityType"])
