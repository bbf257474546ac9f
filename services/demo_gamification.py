"""The demo program's badges and challenges: created before the history is replayed, so
members earn them (or get part-way) through the same units of work as everything else."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from models import ChallengeMetric, Recurrence
from services.gamification.badges import create_badge
from services.gamification.challenges import create_challenge

BADGES = [
    ("First sip", "Your first order with us.", ChallengeMetric.PURCHASE_COUNT, 1),
    ("Regular", "Ten orders and counting.", ChallengeMetric.PURCHASE_COUNT, 10),
    ("Critic", "Three reviews written.", ChallengeMetric.REVIEW_COUNT, 3),
    (
        "Ambassador",
        "A friend you referred made their first order.",
        ChallengeMetric.REFERRAL_COUNT,
        1,
    ),
]


async def create_gamification(session: AsyncSession, *, now: datetime, since: datetime) -> None:
    """Badges awarded by thresholds, a badge awarded by a challenge, a challenge running now
    (members part-way through it) and a monthly one."""
    for name, description, metric, threshold in BADGES:
        await create_badge(
            session,
            name=name,
            description=description,
            image_url=None,
            metric=metric,
            threshold=threshold,
            now=since,
        )
    harvest = await create_badge(
        session,
        name="Harvest hero",
        description="Completed the harvest challenge.",
        image_url=None,
        metric=None,
        threshold=None,
        now=since,
    )
    await create_challenge(
        session,
        name="Harvest season: five orders",
        description="Five orders before the harvest ends earn 300 points and a badge.",
        metric=ChallengeMetric.PURCHASE_COUNT,
        goal=5,
        reward_points=300,
        badge_id=harvest.id,
        starts_at=now - timedelta(days=45),
        ends_at=now + timedelta(days=15),
        recurrence=None,
        now=since,
    )
    await create_challenge(
        session,
        name="Two reviews a month",
        description="Tell us what you think: two reviews in a month earn 100 points.",
        metric=ChallengeMetric.REVIEW_COUNT,
        goal=2,
        reward_points=100,
        badge_id=None,
        starts_at=since,
        ends_at=None,
        recurrence=Recurrence.MONTHLY,
        now=since,
    )
