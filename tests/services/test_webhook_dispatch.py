"""From member events to webhook events and deliveries: which events, for whom, with what
payload; once; nothing for a rolled-back change; reminders before points expire; erasure
scrubs what stored events hold."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import (
    DeliveryStatus,
    EntryKind,
    Member,
    MemberEvent,
    Redemption,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookEventType,
)
from models.engine import session_factory
from services import activity_types, audit, member_profile, members, privacy, redemptions
from services.clock import ManualClock
from services.global_ids import encode_id
from services.ledger.activity import record_activity
from services.ledger.purchases import record_purchase, refund_purchase
from services.ledger.sweeps import sweep
from services.partners import create_partner
from services.program import create_tier
from services.webhooks.catalog import body, event_id
from services.webhooks.dispatch import dispatch
from tests.services.helpers import configure, fund, new_member, new_reward

T = WebhookEventType


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


async def endpoint(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    *types: WebhookEventType,
    partner_id: int | None = None,
) -> int:
    async with sessions.begin() as session:
        row = WebhookEndpoint(
            url="https://93.184.216.34/hook",
            event_types=[t.value for t in types],
            enabled=True,
            partner_id=partner_id,
            secret="whsec_" + "A" * 32,
            created_at=clock.now(),
        )
        session.add(row)
        await session.flush()
        return row.id


async def run_dispatch(sessions: async_sessionmaker[AsyncSession], clock: ManualClock) -> int:
    handled = 0
    while True:
        async with sessions.begin() as session:
            count = await dispatch(session, clock.now())
        handled += count
        if count == 0:
            return handled


async def sent(
    sessions: async_sessionmaker[AsyncSession], endpoint_id: int
) -> list[dict[str, Any]]:
    """The bodies queued for the endpoint, in delivery order."""
    async with sessions() as session:
        rows = await session.execute(
            select(WebhookEvent)
            .join(WebhookDelivery, WebhookDelivery.event_id == WebhookEvent.id)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.id)
        )
        return [{"id": event_id(e.id), **e.payload} for (e,) in rows]


async def purchase(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    member_id: int,
    order: str,
    amount: float = 50,
) -> None:
    async with sessions.begin() as session:
        await record_purchase(
            session, member_id=member_id, order_id=order, amount=amount, now=clock.now()
        )


async def test_without_endpoints_events_are_dispatched_and_nothing_is_written(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    ann = await new_member(sessions, clock)
    await purchase(sessions, clock, ann, "o-1")
    assert await run_dispatch(sessions, clock) == 2  # member.enrolled, points.earned
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(WebhookEvent)) == 0
        waiting = select(func.count()).where(MemberEvent.dispatched.is_(False))
        assert await session.scalar(waiting) == 0
    assert await run_dispatch(sessions, clock) == 0


async def test_a_purchase_that_moves_a_tier_is_points_earned_then_tier_changed(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    async with sessions.begin() as session:
        await create_tier(session, name="Silver", threshold=40, multiplier=1.5, benefits=["x"])
    hook = await endpoint(sessions, clock, T.POINTS_EARNED, T.TIER_CHANGED)
    async with sessions.begin() as session:
        ann = await members.enroll(
            session,
            email="ann@example.com",
            display_name="Ann",
            external_id="c-1",
            now=clock.now(),
        )
    await purchase(sessions, clock, ann.id, "o-1")
    await run_dispatch(sessions, clock)

    earned, tier = await sent(sessions, hook)
    assert earned["type"] == "points.earned" and earned["apiVersion"] == "2026-12"
    assert earned["data"]["member"] == {"id": encode_id("Member", ann.id), "externalId": "c-1"}
    assert earned["data"]["transaction"]["kind"] == "PURCHASE"
    assert earned["data"]["transaction"]["points"] == 50
    assert earned["data"]["transaction"]["reference"] == "o-1"
    assert earned["data"]["balance"]["available"] == 50
    assert tier["type"] == "tier.changed"
    assert (tier["data"]["from"]["name"], tier["data"]["to"]["name"]) == ("Member", "Silver")
    assert tier["data"]["to"]["rank"] == 1
    async with sessions() as session:
        deliveries = list(await session.scalars(select(WebhookDelivery)))
    assert [d.status for d in deliveries] == [DeliveryStatus.PENDING] * 2
    assert all(d.next_attempt_at == clock.now() for d in deliveries)


async def test_the_body_is_the_events_payload_with_its_id_first_the_same_every_time(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    hook = await endpoint(sessions, clock, T.MEMBER_ENROLLED)
    await new_member(sessions, clock)
    await run_dispatch(sessions, clock)
    async with sessions() as session:
        event = await session.scalar(select(WebhookEvent))
        assert event is not None
        first = body(event)
    assert first.startswith(b'{"id":"' + event_id(event.id).encode())
    async with sessions() as session:
        again = await session.get(WebhookEvent, event.id)
        assert again is not None and body(again) == first
    assert (await sent(sessions, hook))[0]["type"] == "member.enrolled"


async def test_a_rolled_back_change_sends_nothing(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    await endpoint(sessions, clock, *WebhookEventType)
    ann = await new_member(sessions, clock)
    await run_dispatch(sessions, clock)
    with pytest.raises(RuntimeError):
        async with sessions.begin() as session:
            await record_purchase(
                session, member_id=ann, order_id="o-1", amount=10, now=clock.now()
            )
            raise RuntimeError("the request failed after the write")
    assert await run_dispatch(sessions, clock) == 0
    async with sessions() as session:
        types = [e.type for e in await session.scalars(select(WebhookEvent))]
    assert types == [T.MEMBER_ENROLLED]


async def test_each_kind_of_change_is_its_event(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    await configure(sessions, referral_bonus=25)
    hook = await endpoint(sessions, clock, *WebhookEventType)
    async with sessions.begin() as session:
        ann = await members.enroll(
            session, email="ann@example.com", display_name="Ann", now=clock.now()
        )
        bob = await members.enroll(
            session,
            email="bob@example.com",
            display_name="Bob",
            referral_code=ann.referral_code,
            now=clock.now(),
        )
    await purchase(sessions, clock, bob.id, "o-1", amount=100)
    async with sessions.begin() as session:
        await refund_purchase(session, order_id="o-1", refund_id="r-1", amount=50, now=clock.now())
    async with sessions.begin() as session:
        await member_profile.update_member(
            session,
            member_id=ann.id,
            changes={"display_name": "Annie"},
            actor=audit.COMMAND_LINE,
            now=clock.now(),
        )
    reward = await new_reward(sessions, clock, cost=10)
    async with sessions.begin() as session:
        made = await redemptions.redeem(
            session,
            member_id=bob.id,
            reward_id=reward,
            idempotency_key="k",
            now=clock.now(),
            actor="test",
        )
    async with sessions.begin() as session:
        await redemptions.cancel(
            session, redemption_id=made.redemption.id, now=clock.now(), actor="test"
        )
    await run_dispatch(sessions, clock)

    seen = [(b["type"], b["data"]["member"]["id"]) for b in await sent(sessions, hook)]
    a, b = encode_id("Member", ann.id), encode_id("Member", bob.id)
    assert seen == [
        ("member.enrolled", a),
        ("member.enrolled", b),
        ("points.earned", b),  # the purchase
        ("referral.completed", a),
        ("points.earned", b),  # the referral bonus, both sides
        ("points.earned", a),
        ("points.reversed", b),
        ("member.updated", a),
        ("reward.redeemed", b),
        ("redemption.cancelled", b),
    ]
    bodies = await sent(sessions, hook)
    assert bodies[7]["data"]["changed"] == ["displayName"]
    assert bodies[7]["data"]["member"]["displayName"] == "Annie"
    assert bodies[3]["data"]["referred"] == {"id": b}
    redeemed = bodies[8]["data"]
    assert redeemed["redemption"]["code"] and redeemed["reward"]["cost"] == 10
    assert bodies[9]["data"]["redemption"]["status"] == "CANCELLED"


async def test_a_welcome_gift_is_a_redemption_too(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    """A voucher given at 0 points (the referral welcome's) still has to be handed over:
    reward.redeemed, as for a redemption paid in points; cancelling it is
    redemption.cancelled, not another redemption."""
    hook = await endpoint(sessions, clock, T.REWARD_REDEEMED, T.REDEMPTION_CANCELLED)
    gift = await new_reward(sessions, clock, cost=500, stock=3)
    await configure(sessions, referral_welcome_reward_id=gift)
    ann = await new_member(sessions, clock)
    async with sessions.begin() as session:
        code = (await session.get_one(Member, ann)).referral_code
        bob = await members.enroll(
            session,
            email="bob@example.com",
            display_name="Bob",
            now=clock.now(),
            referral_code=code,
        )
    async with sessions() as session:
        (voucher,) = await session.scalars(select(Redemption).where(Redemption.member_id == bob.id))
    async with sessions.begin() as session:
        await redemptions.cancel(session, redemption_id=voucher.id, now=clock.now(), actor="test")
    await run_dispatch(sessions, clock)

    bodies = await sent(sessions, hook)
    bob_id = encode_id("Member", bob.id)
    assert [(b["type"], b["data"]["member"]["id"]) for b in bodies] == [
        ("reward.redeemed", bob_id),
        ("redemption.cancelled", bob_id),
    ]
    given = bodies[0]["data"]
    assert given["reward"]["id"] == encode_id("Reward", gift)
    assert given["redemption"]["code"] and given["transaction"]["points"] == 0
    assert given["balance"]["available"] == 0
    assert bodies[1]["data"]["redemption"]["status"] == "CANCELLED"


async def test_a_partner_hears_of_its_own_rewards_only_and_nothing_of_the_member(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    async with sessions.begin() as session:
        bakery = await create_partner(session, name="Bakery", slug="bakery", now=clock.now())
        other = await create_partner(session, name="Other", slug="other", now=clock.now())
        bakery_id, other_id = bakery.partner.id, other.partner.id
    program_hook = await endpoint(sessions, clock, T.REWARD_REDEEMED)
    bakery_hook = await endpoint(
        sessions, clock, T.REWARD_REDEEMED, T.REDEMPTION_USED, partner_id=bakery_id
    )
    other_hook = await endpoint(sessions, clock, T.REWARD_REDEEMED, partner_id=other_id)
    ann = await new_member(sessions, clock)
    await fund(sessions, clock, ann, 100)
    cake = await new_reward(sessions, clock, cost=10, partner_id=bakery_id)
    async with sessions.begin() as session:
        made = await redemptions.redeem(
            session,
            member_id=ann,
            reward_id=cake,
            idempotency_key="k",
            now=clock.now(),
            actor="test",
        )
    async with sessions.begin() as session:
        await redemptions.use(session, redemption_id=made.redemption.id, now=clock.now())
    await run_dispatch(sessions, clock)

    mine = await sent(sessions, bakery_hook)
    assert [b["type"] for b in mine] == ["reward.redeemed", "redemption.used"]
    for sent_body in mine:
        assert set(sent_body["data"]) == {"redemption", "reward"}
        assert "code" not in sent_body["data"]["redemption"]
        assert sent_body["data"]["reward"]["partner"]["slug"] == "bakery"
    assert await sent(sessions, other_hook) == []
    (theirs,) = await sent(sessions, program_hook)
    assert theirs["data"]["member"]["id"] == encode_id("Member", ann)
    assert theirs["data"]["redemption"]["code"] == made.redemption.code
    assert theirs["id"] != mine[0]["id"]  # one event per audience


async def test_pending_points_activating_and_expiry_reminders_are_events(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    await configure(sessions, pending_days=3, expiry_days=30, expiry_reminder_days=5)
    hook = await endpoint(sessions, clock, T.POINTS_ACTIVATED, T.POINTS_EXPIRING, T.POINTS_EXPIRED)
    ann = await new_member(sessions, clock)
    start = clock.now()
    await purchase(sessions, clock, ann, "o-1", amount=40)  # expires at start + 33 days
    clock.advance(timedelta(days=3, minutes=1))
    await sweep(sessions, clock.now())  # activates it
    clock.set(start + timedelta(days=27, hours=23))
    await sweep(sessions, clock.now())  # 5 days and an hour before: not yet
    clock.set(start + timedelta(days=28, minutes=1))
    for _ in range(3):  # 5 days before: one reminder, however many sweeps
        await sweep(sessions, clock.now())
    clock.set(start + timedelta(days=33, minutes=1))
    await sweep(sessions, clock.now())  # expires
    await run_dispatch(sessions, clock)

    bodies = await sent(sessions, hook)
    assert [b["type"] for b in bodies] == ["points.activated", "points.expiring", "points.expired"]
    activated, expiring, expired = (b["data"] for b in bodies)
    assert activated["transaction"]["points"] == 40 and activated["balance"]["available"] == 40
    assert expiring["points"] == 40
    assert expiring["expiresAt"] == (start + timedelta(days=33)).isoformat()
    assert expired["transaction"]["points"] == -40 and expired["balance"]["available"] == 0


async def test_erasure_scrubs_the_stored_events(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    hook = await endpoint(sessions, clock, *WebhookEventType)
    async with sessions.begin() as session:
        ann = await members.enroll(
            session,
            email="zelda.quux@example.org",
            display_name="Zelda Quux",
            external_id="crm-1",
            now=clock.now(),
        )
    await purchase(sessions, clock, ann.id, "o-1")
    await run_dispatch(sessions, clock)
    async with sessions.begin() as session:
        await privacy.erase_member(
            session, member_id=ann.id, reason=None, actor=audit.COMMAND_LINE, now=clock.now()
        )
    await run_dispatch(sessions, clock)
    bodies = await sent(sessions, hook)
    assert [b["type"] for b in bodies] == ["member.enrolled", "points.earned", "member.erased"]
    text = str(bodies)
    assert "zelda" not in text.lower() and "crm-1" not in text
    assert bodies[-1]["data"]["member"] == {"id": encode_id("Member", ann.id), "externalId": None}


async def test_one_dispatcher_at_a_time_and_each_event_once(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    hook = await endpoint(sessions, clock, T.POINTS_EARNED)
    ids = [await new_member(sessions, clock, f"m{n}") for n in range(20)]
    for n, member_id in enumerate(ids):
        await purchase(sessions, clock, member_id, f"o-{n}")

    async def one() -> int:
        return await run_dispatch(sessions, clock)

    handled = await asyncio.gather(*(one() for _ in range(4)))
    assert sum(handled) == 40  # 20 enrolments and 20 purchases, each once
    bodies = await sent(sessions, hook)
    assert len(bodies) == 20 and len({b["id"] for b in bodies}) == 20


async def test_a_custom_activity_is_points_earned_naming_its_activity_type(
    sessions: async_sessionmaker[AsyncSession], clock: ManualClock
) -> None:
    await configure(sessions, review_points=5)
    hook = await endpoint(sessions, clock, T.POINTS_EARNED)
    ann = await new_member(sessions, clock)
    async with sessions.begin() as session:
        survey = await activity_types.create_activity_type(
            session,
            key="survey_completed",
            name="Survey completed",
            points=10,
            caps={},
            segment_id=None,
            tier_multiplier_applies=False,
            now=clock.now(),
        )
        await record_activity(
            session, member_id=ann, reference="s-1", now=clock.now(), activity_type=survey.key
        )
        await record_activity(
            session, member_id=ann, reference="r-1", now=clock.now(), kind=EntryKind.REVIEW
        )
    await purchase(sessions, clock, ann, "o-1")
    await run_dispatch(sessions, clock)

    custom, review, bought = (event["data"]["transaction"] for event in await sent(sessions, hook))
    assert (custom["kind"], custom["points"], custom["description"]) == (
        "ACTIVITY",
        10,
        "Survey completed s-1",
    )
    assert custom["activityType"] == {
        "id": encode_id("ActivityType", survey.id),
        "key": "survey_completed",
        "name": "Survey completed",
    }
    assert (review["kind"], review["activityType"]["key"]) == ("REVIEW", "review")
    assert "activityType" not in bought
