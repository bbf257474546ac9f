"""A member's offers: the promotions, rewards and challenges targeted at it now, by a segment
it is in or by early access open to it, most valuable first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Challenge, Promotion, Reward, Tier
from services.gamification.challenges import running
from services.program import active_promotions
from services.rewards import from_active_partner, not_ended
from services.segments import segments_containing
from services.targeting import applicable_promotions, segment_ids


@dataclass(frozen=True, slots=True)
class Offers:
    promotions: list[Promotion]  # by multiplier, highest first
    rewards: list[Reward]  # by money value (null last), then points cost, highest first
    challenges: list[Challenge]  # by reward points, highest first


async def offers_for(session: AsyncSession, member_id: int, tier_id: int, now: datetime) -> Offers:
    # Targeted promotions the member earns (an experiment's CONTROL members are not offered it).
    promotions = [p for p in await active_promotions(session, now) if p.segment_id is not None]
    challenges = [c for c in await running(session, now) if c.segment_id is not None]
    early_open = and_(Reward.early_access_starts_at <= now, Reward.starts_at > now)
    rewards = list(
        await session.scalars(
            select(Reward).where(
                not_ended(now),
                from_active_partner(),
                or_(Reward.segment_id.is_not(None), early_open),
            )
        )
    )
    ids = segment_ids([*promotions, *challenges, *rewards]) | {
        r.early_access_segment_id for r in rewards if r.early_access_segment_id is not None
    }
    segments = await segments_containing(session, member_id, ids, now)
    thresholds = {t.id: t.threshold for t in await session.scalars(select(Tier))}
    own = thresholds.get(tier_id, 0)

    def early_for_member(reward: Reward) -> bool:
        bar = reward.early_access_tier_id
        return (
            reward.early_access_starts_at is not None
            and reward.starts_at is not None
            and reward.early_access_starts_at <= now < reward.starts_at
            and (
                reward.early_access_segment_id in segments
                or (bar is not None and own >= thresholds.get(bar, own + 1))
            )
        )

    def offered(reward: Reward) -> bool:
        if reward.segment_id is not None and reward.segment_id not in segments:
            return False  # does not exist for the member
        in_early_window = (
            reward.early_access_starts_at is not None
            and reward.starts_at is not None
            and now < reward.starts_at
        )
        if in_early_window:
            return early_for_member(reward)
        return reward.segment_id is not None

    def worth(reward: Reward) -> tuple[int, Decimal, int, int]:
        value = reward.value
        return (0 if value is not None else 1, -(value or Decimal(0)), -reward.cost, reward.id)

    return Offers(
        promotions=sorted(
            applicable_promotions(promotions, member_id=member_id, segments=segments),
            key=lambda p: (-p.multiplier, p.id),
        ),
        rewards=sorted((r for r in rewards if offered(r)), key=worth),
        challenges=sorted(
            (c for c in challenges if c.segment_id in segments),
            key=lambda c: (-c.reward_points, c.id),
        ),
    )
