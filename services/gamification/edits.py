"""Editing challenges and badges after their creation, and ending a challenge now.

What members already did stays meaningful: once a challenge has started, its start does not
move and its end does not move into the past (`end_challenge` ends it now); once a member has
progress in it (anything its metric counts happened since it started, or someone completed
it), its goal does not change. Its name, description and reward (for completions from then
on) may change at any time; progress and completions stay when it ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Badge, Challenge, ChallengeCompletion
from services.errors import Invalid, NotFound
from services.gamification.badges import check_badge_name, clean_badge_fields, flush_badge
from services.gamification.challenges import check_challenge_window, clean_challenge_fields
from services.gamification.progress import anyone_counted
from services.program import bump_catalog_version

ID = ["input", "id"]


async def locked_challenge(session: AsyncSession, challenge_id: int) -> Challenge:
    challenge = await session.get(Challenge, challenge_id, with_for_update=True)
    if challenge is None:
        raise NotFound("no such challenge", field=ID)
    return challenge


async def has_progress(session: AsyncSession, challenge: Challenge, now: datetime) -> bool:
    """Whether a member has progress in the challenge: a completion, or anything its metric
    counts since it started (every period of a recurring one)."""
    if now <= challenge.starts_at:
        return False
    completed = await session.scalar(
        select(ChallengeCompletion.id).where(ChallengeCompletion.challenge_id == challenge.id)
    )
    if completed is not None:
        return True
    return await anyone_counted(
        session, challenge.metric, start=challenge.starts_at, end=challenge.ends_at
    )


async def update_challenge(
    session: AsyncSession, challenge: Challenge, changes: Mapping[str, Any], now: datetime
) -> Challenge:
    """Change only the given fields, within the rules of the module's docstring."""
    clean = {
        name: value
        for name, value in clean_challenge_fields(changes).items()
        if value != getattr(challenge, name)
    }
    started = challenge.starts_at <= now
    if started and "starts_at" in clean:
        raise Invalid(
            "startsAt cannot change once the challenge has started", field=["input", "startsAt"]
        )
    if started and "ends_at" in clean and clean["ends_at"] is not None and clean["ends_at"] < now:
        raise Invalid(
            "endsAt cannot move into the past once the challenge has started: "
            "endChallenge ends it now",
            field=["input", "endsAt"],
        )
    if "goal" in clean and await has_progress(session, challenge, now):
        raise Invalid(
            "goal cannot change once a member has progress in the challenge",
            field=["input", "goal"],
        )
    for name, value in clean.items():
        setattr(challenge, name, value)
    check_challenge_window(challenge)
    await session.flush()
    if "starts_at" in clean or "ends_at" in clean:
        await bump_catalog_version(session)  # earning looks at the challenges' windows
    return challenge


async def end_challenge(session: AsyncSession, challenge: Challenge, now: datetime) -> Challenge:
    """End it now (one not started yet never runs); progress and completions stay. One
    already ended stays as it is."""
    if challenge.ends_at is not None and challenge.ends_at <= now:
        return challenge
    challenge.ends_at = now
    challenge.starts_at = min(challenge.starts_at, now)
    await session.flush()
    await bump_catalog_version(session)
    return challenge


async def locked_badge(session: AsyncSession, badge_id: int) -> Badge:
    badge = await session.get(Badge, badge_id, with_for_update=True)
    if badge is None:
        raise NotFound("no such badge", field=ID)
    return badge


async def update_badge(session: AsyncSession, badge: Badge, changes: Mapping[str, Any]) -> Badge:
    """Change only the given fields (how a badge is awarded does not change)."""
    clean = clean_badge_fields(changes)
    if "name" in clean:
        await check_badge_name(session, clean["name"], excluding=badge.id)
    for name, value in clean.items():
        setattr(badge, name, value)
    await flush_badge(session)
    return badge
