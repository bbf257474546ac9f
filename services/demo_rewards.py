"""The demo program's rewards: the roaster's own catalog, a partner bakery's co-branded rewards
and a charity, and the redemptions members made along their history."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from models import Member, RewardKind, Tier
from services import redemptions, rewards
from services.errors import DomainError
from services.partners import create_partner

PARTNER_NAME = "Northside Bakery"
PARTNER_SLUG = "northside-bakery"


@dataclass(frozen=True, slots=True)
class _RewardSpec:
    name: str
    description: str
    kind: RewardKind
    cost: int
    value: float | None = None
    partner: bool = False
    minimum_tier: str | None = None
    stock: int | None = None
    per_member_limit: int | None = None
    settlement_amount: float | None = None


CATALOG = [
    _RewardSpec(
        "Free drink", "Any drink on the menu, any size.", RewardKind.FREE_PRODUCT, 150, 5.5
    ),
    _RewardSpec(
        "$5 off your next order", "Online or in store.", RewardKind.DISCOUNT_AMOUNT, 500, 5.0
    ),
    _RewardSpec(
        "10% off a bag of beans", "Any origin, any size.", RewardKind.DISCOUNT_PERCENT, 400, 10.0
    ),
    _RewardSpec("Free shipping", "On one bean order.", RewardKind.FREE_SHIPPING, 300, 6.0),
    _RewardSpec(
        "Home barista class",
        "Two hours with our head roaster: espresso, milk, latte art.",
        RewardKind.EXPERIENCE,
        2500,
        60.0,
        minimum_tier="Gold",
        stock=12,
        per_member_limit=1,
    ),
    _RewardSpec(
        "Panama Gesha, 100 g",
        "This season's most talked-about lot. Limited.",
        RewardKind.FREE_PRODUCT,
        1200,
        32.0,
        stock=3,
        per_member_limit=1,
    ),
    _RewardSpec(
        "Free croissant at Northside Bakery",
        "Butter or almond, at any Northside Bakery.",
        RewardKind.FREE_PRODUCT,
        120,
        3.5,
        partner=True,
        settlement_amount=1.4,
    ),
    _RewardSpec(
        "Northside brunch for two",
        "Weekend brunch at Northside Bakery's flagship.",
        RewardKind.EXPERIENCE,
        1500,
        36.0,
        partner=True,
        minimum_tier="Silver",
        stock=20,
        per_member_limit=1,
        settlement_amount=18.0,
    ),
    _RewardSpec(
        "Plant a coffee tree",
        "100 points plant one coffee tree with a smallholder co-operative ($1.00 donated).",
        RewardKind.DONATION,
        100,
        1.0,
    ),
]


@dataclass(slots=True)
class DemoRewards:
    reward_ids: list[int] = field(default_factory=list)
    donation_id: int = 0
    redeemed: dict[str, int] = field(default_factory=dict)  # idempotency key -> redemption id
    counts: dict[str, int] = field(
        default_factory=lambda: {"redemptions": 0, "donations": 0, "used": 0, "cancelled": 0}
    )


async def create_catalog(
    session: AsyncSession, *, tiers: dict[str, int], now: datetime
) -> DemoRewards:
    partner = await create_partner(session, name=PARTNER_NAME, slug=PARTNER_SLUG, now=now)
    catalog = DemoRewards()
    for spec in CATALOG:
        reward = await rewards.create_reward(
            session,
            name=spec.name,
            description=spec.description,
            kind=spec.kind,
            cost=spec.cost,
            value=spec.value,
            partner_id=partner.partner.id if spec.partner else None,
            minimum_tier_id=tiers[spec.minimum_tier] if spec.minimum_tier else None,
            stock=spec.stock,
            starts_at=None,
            ends_at=None,
            per_member_limit=spec.per_member_limit,
            settlement_amount=spec.settlement_amount,
            now=now,
        )
        if spec.kind is RewardKind.DONATION:
            catalog.donation_id = reward.id
        else:
            catalog.reward_ids.append(reward.id)
    return catalog


async def redeem_best(
    session: AsyncSession,
    catalog: DemoRewards,
    *,
    member_id: int,
    key: str,
    at: datetime,
    rng: random.Random,
) -> None:
    """What a member tends to do: redeem the most valuable reward it can afford (sometimes the
    second best), or nothing when it cannot afford any."""
    member = await session.get(Member, member_id)
    assert member is not None
    tier = await session.get(Tier, member.tier_id)
    assert tier is not None
    options = await rewards.recommended(
        session,
        member_id=member_id,
        available=member.available,
        tier_threshold=tier.threshold,
        now=at,
        first=3,
    )
    affordable = [r for r in options if r.cost <= member.available and r.id != catalog.donation_id]
    if not affordable:
        return
    choice = affordable[1] if len(affordable) > 1 and rng.random() < 0.3 else affordable[0]
    await _redeem(session, catalog, member_id=member_id, reward_id=choice.id, key=key, at=at)


async def donate(
    session: AsyncSession, catalog: DemoRewards, *, member_id: int, key: str, at: datetime
) -> None:
    member = await session.get(Member, member_id)
    assert member is not None
    if member.available >= 100:
        await _redeem(
            session, catalog, member_id=member_id, reward_id=catalog.donation_id, key=key, at=at
        )
        catalog.counts["donations"] += 1


async def _redeem(
    session: AsyncSession,
    catalog: DemoRewards,
    *,
    member_id: int,
    reward_id: int,
    key: str,
    at: datetime,
) -> None:
    try:
        result = await redemptions.redeem(
            session,
            member_id=member_id,
            reward_id=reward_id,
            idempotency_key=key,
            now=at,
            actor=f"member:{member_id}",
        )
    except DomainError:
        return  # out of stock since it was recommended, say: the member shrugs
    catalog.redeemed[key] = result.redemption.id
    catalog.counts["redemptions"] += 1


async def follow_up(
    session: AsyncSession, catalog: DemoRewards, *, key: str, cancel: bool, at: datetime
) -> None:
    """At checkout, the voucher is used; now and then a member changes its mind instead."""
    redemption_id = catalog.redeemed.get(key)
    if redemption_id is None:
        return
    if cancel:
        await redemptions.cancel(session, redemption_id=redemption_id, now=at, actor="admin:demo")
        catalog.counts["cancelled"] += 1
    else:
        await redemptions.use(session, redemption_id=redemption_id, now=at)
        catalog.counts["used"] += 1


def follow_up_delay(rng: random.Random) -> timedelta:
    return timedelta(hours=rng.uniform(2, 24 * 5))
