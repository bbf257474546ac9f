"""Badges: created by admins, awarded once per member, by challenges or by thresholds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
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
    fields = clean_badge_fields({"name": name, "description": description, "image_url": image_url})
    if (metric is None) != (threshold is None):
        raise Invalid("give both metric and threshold, or neither", field=["input", "threshold"])
    if threshold is not None and not 1 <= threshold <= MAX_POINTS:
        raise Invalid("threshold must be between 1 and 1,000,000,000", field=["input", "threshold"])
    await check_badge_name(session, fields["name"])
    badge = Badge(**fields, metric=metric, threshold=threshold, created_at=now)
    session.add(badge)
    await flush_badge(session)
    await bump_catalog_version(session)  # earning starts looking at badges
    return badge


def clean_badge_fields(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The given badge fields (name, description, image_url), checked; null is INVALID but for
    image_url (no image)."""
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        field = ["input", "imageUrl" if name == "image_url" else name]
        if value is None and name != "image_url":
            raise Invalid(f"{field[1]} cannot be null", field=field)
        if name == "name":
            clean[name] = clean_text(value, field, max_length=100)
        elif name == "description":
            if len(value) > 1000:
                raise Invalid("must be at most 1000 characters", field=field)
            clean[name] = value.strip()
        elif name == "image_url":
            url = value.strip() if value is not None else None
            if url is not None:
                parts = urlsplit(url)
                if parts.scheme not in ("https", "http") or not parts.netloc or len(url) > MAX_URL:
                    raise Invalid("an http(s) URL of at most 500 characters", field=field)
            clean[name] = url
        else:
            raise AssertionError(f"not a badge field: {name}")
    return clean


async def check_badge_name(session: AsyncSession, name: str, excluding: int | None = None) -> None:
    stmt = select(Badge.id).where(Badge.name == name)
    if excluding is not None:
        stmt = stmt.where(Badge.id != excluding)
    if await session.scalar(stmt) is not None:
        raise AlreadyExists("a badge with this name already exists", field=["input", "name"])


async def flush_badge(session: AsyncSession) -> None:
    """Flush a new or renamed badge; a concurrent clash of names is ALREADY_EXISTS."""
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists(
            "a badge with this name already exists", field=["input", "name"]
        ) from exc


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
