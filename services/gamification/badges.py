"""Badges: created by admins, awarded once per member, by challenges or by thresholds."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models import Badge, ChallengeMetric, Member, MemberBadge
from services.errors import AlreadyExists, Invalid
from services.events import record_badge_awarded
from services.gamification.progress import metric_value
from services.program import MAX_POINTS, bump_catalog_version, clean_text

MAX_URL = 500


async def create_badge(
    session: AsyncSession,
    *,
    name: str,
    description: str,
    image_url: str | None,
    metric: ChallengeMetric | None,
    threshold: int | None,
    now: datetime,
) -> Badge:
    name = clean_text(name, ["input", "name"], max_length=100)
    if len(description) > 1000:
        raise Invalid("must be at most 1000 characters", field=["input", "description"])
    if image_url is not None:
        image_url = image_url.strip()
        parts = urlsplit(image_url)
        if parts.scheme not in ("https", "http") or not parts.netloc or len(image_url) > MAX_URL:
            raise Invalid("an http(s) URL of at most 500 characters", field=["input", "imageUrl"])
    if (metric is None) != (threshold is None):
        raise Invalid("give both metric and threshold, or neither", field=["input", "threshold"])
    if threshold is not None and not 1 <= threshold <= MAX_POINTS:
        raise Invalid("threshold must be between 1 and 1,000,000,000", field=["input", "threshold"])
    if await session.scalar(select(Badge.id).where(Badge.name == name)) is not None:
        raise AlreadyExists("a badge with this name already exists", field=["input", "name"])
    badge = Badge(
        name=name,
        description=description.strip(),
        image_url=image_url,
        metric=metric,
        threshold=threshold,
        created_at=now,
    )
    session.add(badge)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(
            "a badge with this name already exists", field=["input", "name"]
        ) from exc
    await bump_catalog_version(session)  # earning starts looking at badges
    return badge


async def award(
    session: AsyncSession, member: Member, badge_id: int, now: datetime
) -> MemberBadge | None:
    """Award the badge unless the member holds it (call with the member locked)."""
    held = await session.scalar(
        select(MemberBadge.id).where(
            MemberBadge.member_id == member.id, MemberBadge.badge_id == badge_id
        )
    )
    if held is not None:
        return None
    awarded = MemberBadge(member_id=member.id, badge_id=badge_id, awarded_at=now)
    session.add(awarded)
    await session.flush()  # the next check in this unit of work sees it (no autoflush)
    record_badge_awarded(session, member.id, badge_id, now)
    return awarded


async def award_thresholds(session: AsyncSession, member: Member, now: datetime) -> int:
    """Award the threshold badges the member's lifetime counts have reached."""
    pending = list(
        await session.scalars(
            select(Badge).where(
                Badge.metric.is_not(None),
                Badge.id.not_in(
                    select(MemberBadge.badge_id).where(MemberBadge.member_id == member.id)
                ),
            )
        )
    )
    awarded = 0
    counts: dict[ChallengeMetric, int] = {}
    for badge in pending:
        assert badge.metric is not None and badge.threshold is not None
        if badge.metric not in counts:
            counts[badge.metric] = await metric_value(session, member.id, badge.metric)
        if counts[badge.metric] >= badge.threshold and await award(session, member, badge.id, now):
            awarded += 1
    return awarded
