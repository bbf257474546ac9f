"""redeemReward's three-statement path on PostgreSQL writes exactly what the general path
writes, and leaves to it (writing nothing) every redemption it does not plainly allow."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import (
    EntryKind,
    IdempotencyRecord,
    LedgerEntry,
    Member,
    MemberEvent,
    Redemption,
    Reward,
    RewardKind,
)
from models.engine import session_factory
from services import redemptions
from services.clock import ManualClock
from services.direct import redemptions as direct_redemptions
from services.direct.redemptions import RedeemedReward
from services.errors import Invalid
from services.partners import create_partner
from services.program import create_tier
from tests.services.helpers import (
    assert_balances_match_ledger,
    cached_balances,
    configure,
    fund,
    listened_writer,
    new_member,
    new_reward,
    rows_of,
)

Sessions = async_sessionmaker[AsyncSession]


class Direct:
    """The direct path on an engine, remembering which members it told the bus about."""

    def __init__(self, engine: AsyncEngine, clock: ManualClock) -> None:
        self.writer, self.told = listened_writer(engine)
        self.clock = clock

    async def redeem(self, member_id: int, reward_id: int, key: str) -> RedeemedReward | None:
        return await direct_redemptions.redeem(
            self.writer,
            member_id=member_id,
            reward_id=reward_id,
            key=key,
            now=self.clock.now(),
            actor=f"member:{member_id}",
        )


async def general(
    sessions: Sessions, clock: ManualClock, member_id: int, reward_id: int, key: str
) -> None:
    async with sessions.begin() as session:
        await redemptions.redeem(
            session,
            member_id=member_id,
            reward_id=reward_id,
            idempotency_key=key,
            now=clock.now(),
            actor=f"member:{member_id}",
        )


async def written(sessions: Sessions, member_id: int) -> dict[str, Any]:
    """What redemptions wrote for a member, without ids, codes or the member's identity: two
    members with the same history and the same redemptions must compare equal."""
    async with sessions() as session:
        member = await session.get(Member, member_id)
        assert member is not None
        entries = await rows_of(session, LedgerEntry, member_id)
        position = {entry.id: n for n, entry in enumerate(entries)}
        made = await rows_of(session, Redemption, member_id)
        events = await rows_of(session, MemberEvent, member_id)
        made_at = {r.id: n for n, r in enumerate(made)}

        def by_position(data: dict[str, Any]) -> dict[str, Any]:
            """Event data naming entries or redemptions, by their place, not their id."""
            found = dict(data)
            if "entry" in found:
                found["entry"] = position[found["entry"]]
            if "redemption" in found:
                found["redemption"] = made_at[found["redemption"]]
            return found

        claims = (
            await session.scalars(
                select(IdempotencyRecord)
                .where(IdempotencyRecord.scope == f"redeem:member:{member_id}")
                .order_by(IdempotencyRecord.id)
            )
        ).all()
        return {
            "balances": cached_balances(member),
            "entries": [
                (
                    e.kind,
                    e.status,
                    e.points,
                    e.remaining,
                    e.description,
                    e.reference,
                    e.created_at,
                    e.available_at,
                    e.expires_at,
                    e.breakdown if e.kind is EntryKind.REDEMPTION else None,
                    e.actor.split(":")[0],
                    e.reverses_entry_id and position[e.reverses_entry_id],
                )
                for e in entries
            ],
            "redemptions": [
                (
                    r.reward_id,
                    r.partner_id,
                    position[r.entry_id],
                    r.points,
                    r.value,
                    r.settlement_amount,
                    r.status,
                    r.code is None,
                    r.receipt_number.startswith("R-"),
                    r.took_stock,
                    r.drawn,
                    r.created_at,
                    r.cancelled_at,
                    r.actor.split(":")[0],
                )
                for r in made
            ],
            "events": [
                (e.kind, e.entry_id and position[e.entry_id], by_position(e.data), e.created_at)
                for e in events
            ],
            "claims": [(c.key, c.fingerprint, c.entry_id and position[c.entry_id]) for c in claims],
        }


async def stock(sessions: Sessions, reward_id: int) -> int | None:
    async with sessions() as session:
        return await session.scalar(select(Reward.stock).where(Reward.id == reward_id))


async def test_given_lots_a_partner_stock_and_a_donation_then_both_paths_write_the_same_rows(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    await configure(sessions, expiry_days=30)
    ann, bob = await new_member(sessions, clock, "ann"), await new_member(sessions, clock, "bob")
    for points in (50, 30, 200):  # three lots expiring on different days
        await fund(sessions, clock, ann, points)
        await fund(sessions, clock, bob, points)
        clock.advance(timedelta(days=3))
    async with sessions.begin() as session:
        partner = await create_partner(session, name="Bean Co", slug="bean-co", now=clock.now())
        partner_id = partner.partner.id
    coffee = await new_reward(
        sessions,
        clock,
        cost=70,
        stock=10,
        partner_id=partner_id,
        value=3.5,
        settlement_amount=2.25,
        per_member_limit=3,
    )
    charity = await new_reward(
        sessions, clock, name="Plant a tree", kind=RewardKind.DONATION, cost=25, value=1
    )
    direct = Direct(pg, clock)
    # 70 from the first two lots and the third, then 25, then 70 again (from the third).
    for n, reward_id in enumerate((coffee, charity, coffee)):
        await general(sessions, clock, ann, reward_id, f"k{n}")
        assert await direct.redeem(bob, reward_id, f"k{n}") is not None
        clock.advance(timedelta(minutes=1))
    # cancelling a direct redemption returns the points as the general one's does
    for member_id in (ann, bob):
        async with sessions() as session:
            first = await session.scalar(
                select(Redemption.id)
                .where(Redemption.member_id == member_id)
                .order_by(Redemption.id)
            )
        assert first is not None
        async with sessions.begin() as session:
            await redemptions.cancel(session, redemption_id=first, now=clock.now(), actor="svc")

    ann_rows = await written(sessions, ann)
    assert len(ann_rows["redemptions"]) == 3 and ann_rows["redemptions"][1][7]  # no code
    assert ann_rows == await written(sessions, bob)
    assert await stock(sessions, coffee) == 10 - 2  # two each, one each given back
    assert direct.told == [frozenset({bob})] * 3
    await assert_balances_match_ledger(sessions, bob)


async def test_the_answer_is_what_was_written(pg: AsyncEngine, clock: ManualClock) -> None:
    sessions = session_factory(pg)
    member_id = await new_member(sessions, clock)
    await fund(sessions, clock, member_id, 100)
    reward_id = await new_reward(sessions, clock, cost=60, value=5)
    redeemed = await Direct(pg, clock).redeem(member_id, reward_id, "k")
    assert redeemed is not None
    async with sessions() as session:
        row = await session.get(Redemption, redeemed.redemption.id)
    assert row is not None
    answer = redeemed.redemption
    assert (answer.code, answer.receipt_number, answer.points, answer.value, answer.status) == (
        row.code,
        row.receipt_number,
        row.points,
        row.value,
        row.status,
    )
    assert (answer.created_at, answer.reward_id, redeemed.entry.id) == (
        row.created_at,
        row.reward_id,
        row.entry_id,
    )
    assert (redeemed.member.available, redeemed.member.redeemed) == (40, 60)


async def test_given_a_used_key_then_the_general_path_replays_it(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    member_id = await new_member(sessions, clock)
    await fund(sessions, clock, member_id, 100)
    reward_id = await new_reward(sessions, clock, cost=10)
    direct = Direct(pg, clock)
    assert await direct.redeem(member_id, reward_id, "k") is not None
    assert await direct.redeem(member_id, reward_id, "k") is None
    assert direct.told == [frozenset({member_id})]


@pytest.mark.parametrize(
    "reason",
    [
        "no such reward",
        "not yet",
        "ended",
        "above the tier",
        "at the limit",
        "too dear",
        "out of stock",
        "points to settle",
        "more lots than a batch",
    ],
)
async def test_given_a_redemption_not_plainly_allowed_then_nothing_is_written(
    pg: AsyncEngine, clock: ManualClock, reason: str
) -> None:
    sessions = session_factory(pg)
    member_id = await new_member(sessions, clock)
    for _ in range(9 if reason == "more lots than a batch" else 1):
        await fund(sessions, clock, member_id, 10)
        clock.advance(timedelta(seconds=1))
    terms: dict[str, Any] = {"cost": 10}
    if reason == "not yet":
        terms["starts_at"] = clock.now() + timedelta(hours=1)
    elif reason == "ended":
        terms["ends_at"] = clock.now()
    elif reason == "above the tier":
        async with sessions.begin() as session:
            gold = await create_tier(session, name="Gold", threshold=500, multiplier=1, benefits=[])
        terms["minimum_tier_id"] = gold.id
    elif reason == "at the limit":
        terms["per_member_limit"] = 1
    elif reason == "too dear":
        terms["cost"] = 11
    elif reason == "out of stock":
        terms["stock"] = 0
    elif reason == "more lots than a batch":
        terms["cost"] = 90
    reward_id = await new_reward(sessions, clock, **terms)
    if reason == "at the limit":
        await general(sessions, clock, member_id, reward_id, "before")
        await fund(sessions, clock, member_id, 10)
    if reason == "no such reward":
        reward_id += 1000
    if reason == "points to settle":
        await configure(sessions, expiry_days=1)
        await fund(sessions, clock, member_id, 10)  # expires in a day
        clock.advance(timedelta(days=2))
    async with sessions() as session:
        before = await session.scalar(select(func.count()).select_from(LedgerEntry))

    direct = Direct(pg, clock)
    assert await direct.redeem(member_id, reward_id, "k") is None

    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(LedgerEntry)) == before
        key_used = await session.scalar(
            select(IdempotencyRecord.id).where(IdempotencyRecord.key == "k")
        )
    assert key_used is None and direct.told == []
    await assert_balances_match_ledger(sessions, member_id)


async def test_given_a_cost_beyond_one_entry_then_invalid_and_nothing_written(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    member_id = await new_member(sessions, clock)
    await fund(sessions, clock, member_id, 100_000_000)
    clock.advance(timedelta(seconds=1))
    await fund(sessions, clock, member_id, 100_000_000)
    reward_id = await new_reward(sessions, clock, cost=100_000_001)
    with pytest.raises(Invalid):
        await Direct(pg, clock).redeem(member_id, reward_id, "k")
    member = await assert_balances_match_ledger(sessions, member_id)
    assert member.available == 200_000_000
