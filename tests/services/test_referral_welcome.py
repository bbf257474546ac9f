"""The referral welcome: a member enrolling with another member's code gets the program's
welcome points (a REFERRAL entry) and a voucher of its welcome reward at 0 points, once, with
its enrolment; never with its own code; a reward out of stock is skipped, not refused."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import EntryKind, LedgerEntry, Member, Redemption, RedemptionStatus, Reward
from services import members
from services.clock import ManualClock
from services.errors import AlreadyExists, ErrorCode, Invalid, NotFound
from tests.services.helpers import assert_balances_match_ledger, configure, new_reward

Sessions = async_sessionmaker[AsyncSession]


async def enroll(sessions: Sessions, clock: ManualClock, email: str, code: str | None) -> Member:
    async with sessions.begin() as session:
        return await members.enroll(
            session,
            email=email,
            display_name=email.split("@")[0],
            now=clock.now(),
            referral_code=code,
        )


async def rows(sessions: Sessions, member_id: int) -> tuple[list[Any], list[Any]]:
    async with sessions() as session:
        entries = list(
            await session.scalars(
                select(LedgerEntry).where(LedgerEntry.member_id == member_id).order_by("id")
            )
        )
        vouchers = list(
            await session.scalars(select(Redemption).where(Redemption.member_id == member_id))
        )
    return entries, vouchers


async def test_a_referred_member_gets_the_welcome_points_and_voucher_once(
    sessions: Sessions, clock: ManualClock
) -> None:
    # Given a welcome of 50 points and a free coffee
    coffee = await new_reward(sessions, clock, stock=5)
    await configure(sessions, referral_welcome_points=50, referral_welcome_reward_id=coffee)
    ann = await enroll(sessions, clock, "ann@example.com", None)

    # When Bob enrols with Ann's code
    bob = await enroll(sessions, clock, "bob@example.com", ann.referral_code.lower())

    # Then Bob has 50 points as a REFERRAL entry and an issued voucher that cost nothing
    entries, vouchers = await rows(sessions, bob.id)
    welcome = [e for e in entries if e.kind is EntryKind.REFERRAL]
    assert [(e.points, e.description) for e in welcome] == [(50, "Referral welcome")]
    assert [(v.reward_id, v.points, v.status) for v in vouchers] == [
        (coffee, 0, RedemptionStatus.ISSUED)
    ]
    assert vouchers[0].code is not None
    member = await assert_balances_match_ledger(sessions, bob.id)
    assert (member.available, member.earned_points) == (50, 50)
    async with sessions() as session:
        assert (await session.get_one(Reward, coffee)).stock == 4
    # Ann, the referrer, gets nothing now (the referral bonus waits for Bob's first purchase),
    # and nobody enrolling without a code is welcomed.
    assert await rows(sessions, ann.id) == ([], [])
    cat = await enroll(sessions, clock, "cat@example.com", None)
    assert await rows(sessions, cat.id) == ([], [])

    # A retried enrolment is refused with nothing written: the welcome stays one.
    with pytest.raises(AlreadyExists):
        await enroll(sessions, clock, "bob@example.com", ann.referral_code)
    assert [len(found) for found in await rows(sessions, bob.id)] == [len(entries), 1]


async def test_points_alone_or_a_voucher_alone(sessions: Sessions, clock: ManualClock) -> None:
    await configure(sessions, referral_welcome_points=20)
    ann = await enroll(sessions, clock, "ann@example.com", None)
    bob = await enroll(sessions, clock, "bob@example.com", ann.referral_code)
    entries, vouchers = await rows(sessions, bob.id)
    assert ([e.points for e in entries], vouchers) == ([20], [])

    coffee = await new_reward(sessions, clock)
    await configure(sessions, referral_welcome_points=0, referral_welcome_reward_id=coffee)
    cat = await enroll(sessions, clock, "cat@example.com", ann.referral_code)
    entries, vouchers = await rows(sessions, cat.id)
    assert [(e.kind, e.points) for e in entries] == [(EntryKind.REDEMPTION, 0)]
    assert [v.points for v in vouchers] == [0]


async def test_a_member_cannot_be_welcomed_with_its_own_code(
    sessions: Sessions, clock: ManualClock
) -> None:
    await configure(sessions, referral_welcome_points=50)
    ann = await enroll(sessions, clock, "ann@example.com", None)

    with pytest.raises(Invalid) as caught:
        await enroll(sessions, clock, "Ann+again@Example.com", ann.referral_code)

    assert caught.value.field == ["input", "referralCode"]
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Member)) == 1
        assert await session.scalar(select(func.count()).select_from(LedgerEntry)) == 0


async def test_a_welcome_reward_out_of_stock_is_skipped_and_the_points_still_paid(
    sessions: Sessions, clock: ManualClock
) -> None:
    coffee = await new_reward(sessions, clock, stock=1)
    await configure(sessions, referral_welcome_points=10, referral_welcome_reward_id=coffee)
    ann = await enroll(sessions, clock, "ann@example.com", None)
    bob = await enroll(sessions, clock, "bob@example.com", ann.referral_code)
    cat = await enroll(sessions, clock, "cat@example.com", ann.referral_code)

    assert [len(v) for _, v in (await rows(sessions, bob.id), await rows(sessions, cat.id))] == [
        1,
        0,
    ]
    cat_entries, _ = await rows(sessions, cat.id)
    assert [(e.kind, e.points) for e in cat_entries] == [(EntryKind.REFERRAL, 10)]
    async with sessions() as session:
        assert (await session.get_one(Reward, coffee)).stock == 0


async def test_the_welcome_settings_are_checked(sessions: Sessions, clock: ManualClock) -> None:
    with pytest.raises(NotFound) as missing:
        await configure(sessions, referral_welcome_reward_id=999)
    assert missing.value.field == ["input", "referralWelcomeRewardId"]
    with pytest.raises(Invalid) as negative:
        await configure(sessions, referral_welcome_points=-1)
    assert (negative.value.code, negative.value.field) == (
        ErrorCode.INVALID,
        ["input", "referralWelcomePoints"],
    )
    coffee = await new_reward(sessions, clock)
    await configure(sessions, referral_welcome_reward_id=coffee)
    await configure(sessions, referral_welcome_reward_id=None)  # null clears it
    ann = await enroll(sessions, clock, "ann@example.com", None)
    bob = await enroll(sessions, clock, "bob@example.com", ann.referral_code)
    assert await rows(sessions, bob.id) == ([], [])
