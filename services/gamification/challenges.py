"""Challenges: a goal on a metric inside a window, paid once per member (once per period for
recurring ones) the moment a unit of work reaches it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Exists, Select, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    Badge,
    Challenge,
    ChallengeCompletion,
    ChallengeMetric,
    EntryKind,
    Member,
    Program,
    Recurrence,
)
from services.errors import Invalid, NotFound
from services.events import record_challenge_completed
from services.gamification import badges
from services.gamification.progress import metric_value
from services.ledger.entries import credit
from services.program import MAX_POINTS, bump_catalog_version, clean_text
from services.segments import segments_containing
from services.targeting import admitted, check_segment, segment_ids

# How long a completed challenge that has ended still shows among a member's challenges.
RECENT = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Progress:
    challenge: Challenge
    period_start: datetime
    progress: int  # capped at the goal
    completed_at: datetime | None


def current_period(challenge: Challenge, now: datetime) -> tuple[datetime, datetime | None] | None:
    """The window progress counts in now, or None when the challenge is not running."""
    if now < challenge.starts_at or (challenge.ends_at is not None and now >= challenge.ends_at):
        return None
    start, end = challenge.starts_at, challenge.ends_at
    if challenge.recurrence is Recurrence.WEEKLY:
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        week = day - timedelta(days=day.weekday())
        start, end = max(start, week), _earliest(end, week + timedelta(days=7))
    elif challenge.recurrence is Recurrence.MONTHLY:
        month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        following = (month + timedelta(days=32)).replace(day=1)
        start, end = max(start, month), _earliest(end, following)
    return start, end


def _earliest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None else min(a, b)


async def create_challenge(
    session: AsyncSession,
    *,
    name: str,
    description: str,
    metric: ChallengeMetric,
    goal: int,
    reward_points: int,
    badge_id: int | None,
    starts_at: datetime,
    ends_at: datetime | None,
    recurrence: Recurrence | None,
    now: datetime,
    segment_id: int | None = None,
) -> Challenge:
    fields = clean_challenge_fields(
        {
            "name": name,
            "description": description,
            "goal": goal,
            "reward_points": reward_points,
            "starts_at": starts_at,
            "ends_at": ends_at,
        }
    )
    if badge_id is not None and await session.get(Badge, badge_id) is None:
        raise NotFound("no such badge", field=["input", "badgeId"])
    await check_segment(session, segment_id, ["input", "segmentId"])
    challenge = Challenge(
        **fields,
        metric=metric,
        badge_id=badge_id,
        recurrence=recurrence,
        created_at=now,
        segment_id=segment_id,
    )
    check_challenge_window(challenge)
    session.add(challenge)
    await session.flush()
    await bump_catalog_version(session)  # earning starts looking at challenges
    return challenge


_FIELD_NAMES = {"reward_points": "rewardPoints", "starts_at": "startsAt", "ends_at": "endsAt"}


def clean_challenge_fields(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The given challenge fields (name, description, goal, reward_points, starts_at, ends_at),
    checked; null is INVALID but for ends_at (no end). The window is checked on the challenge
    they make (`check_challenge_window`)."""
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        field = ["input", _FIELD_NAMES.get(name, name)]
        if value is None and name != "ends_at":
            raise Invalid(f"{field[1]} cannot be null", field=field)
        if name == "name":
            clean[name] = clean_text(value, field, max_length=200)
        elif name == "description":
            if len(value) > 1000:
                raise Invalid("must be at most 1000 characters", field=field)
            clean[name] = value.strip()
        elif name == "goal":
            if not 1 <= value <= MAX_POINTS:
                raise Invalid("goal must be between 1 and 1,000,000,000", field=field)
            clean[name] = value
        elif name == "reward_points":
            if not 0 <= value <= 100_000_000:
                raise Invalid("rewardPoints must be between 0 and 100,000,000", field=field)
            clean[name] = value
        elif name in ("starts_at", "ends_at"):
            clean[name] = value
        else:
            raise AssertionError(f"not a challenge field: {name}")
    return clean


def check_challenge_window(challenge: Challenge) -> None:
    if challenge.ends_at is not None and challenge.ends_at <= challenge.starts_at:
        raise Invalid("endsAt must be after startsAt", field=["input", "endsAt"])


async def gamified(session: AsyncSession, now: datetime) -> bool:
    """Whether a write at `now` has goals to count for: a badge awarded at a threshold, or a
    running challenge (writes without a catalog at hand ask this; see `Catalog.gamified_at`)."""
    found = await session.scalar(select(_threshold_badge() | exists(_running(now))))
    return bool(found)


async def challenge_windows(
    session: AsyncSession, since: datetime
) -> list[tuple[datetime, datetime | None]]:
    """(starts_at, ends_at) of the challenges not ended by `since`."""
    rows = await session.execute(
        select(Challenge.starts_at, Challenge.ends_at).where(
            or_(Challenge.ends_at.is_(None), Challenge.ends_at > since)
        )
    )
    return [(starts_at, ends_at) for starts_at, ends_at in rows]


async def threshold_badges(session: AsyncSession) -> bool:
    """Whether any badge is awarded at a threshold (then every earn counts towards it)."""
    return bool(await session.scalar(select(_threshold_badge())))


def _threshold_badge() -> Exists:
    return exists(select(Badge.id).where(Badge.threshold.is_not(None)))


def _running(now: datetime) -> Select[tuple[Challenge]]:
    return select(Challenge).where(
        Challenge.starts_at <= now,
        or_(Challenge.ends_at.is_(None), Challenge.ends_at > now),
    )


async def running(session: AsyncSession, now: datetime) -> list[Challenge]:
    return list(await session.scalars(_running(now).order_by(Challenge.starts_at, Challenge.id)))


async def progress(
    session: AsyncSession, member_id: int, challenges: list[Challenge], now: datetime
) -> list[Progress]:
    """The member's progress in each challenge's current period (skipped when not running)."""
    periods = {c.id: p for c in challenges if (p := current_period(c, now)) is not None}
    if not periods:
        return []
    done = {
        (row.challenge_id, row.period_start): row.completed_at
        for row in await session.scalars(
            select(ChallengeCompletion).where(
                ChallengeCompletion.member_id == member_id,
                ChallengeCompletion.challenge_id.in_(list(periods)),
            )
        )
    }
    found = []
    for challenge in challenges:
        if challenge.id not in periods:
            continue
        start, end = periods[challenge.id]
        completed_at = done.get((challenge.id, start))
        value = (
            challenge.goal
            if completed_at is not None
            else await metric_value(session, member_id, challenge.metric, start=start, end=end)
        )
        found.append(Progress(challenge, start, min(value, challenge.goal), completed_at))
    return found


async def recently_completed(
    session: AsyncSession,
    member_id: int,
    now: datetime,
    *,
    exclude: list[int],
    within: timedelta = RECENT,
) -> list[Progress]:
    """Completions of the last `within` of challenges not in `exclude` (those still running
    show through `progress`), newest first."""
    rows = await session.execute(
        select(ChallengeCompletion, Challenge)
        .join(Challenge, Challenge.id == ChallengeCompletion.challenge_id)
        .where(
            ChallengeCompletion.member_id == member_id,
            ChallengeCompletion.completed_at >= now - within,
            Challenge.id.not_in(exclude),
        )
        .order_by(ChallengeCompletion.completed_at.desc(), ChallengeCompletion.id.desc())
    )
    return [
        Progress(challenge, completion.period_start, challenge.goal, completion.completed_at)
        for completion, challenge in rows
    ]


async def running_for(session: AsyncSession, member_id: int, now: datetime) -> list[Challenge]:
    """The running challenges that exist for the member: untargeted ones, and those targeted
    at a segment it is in now (only those make progress)."""
    found = await running(session, now)
    targeted = segment_ids(found)
    if not targeted:
        return found
    return admitted(found, await segments_containing(session, member_id, targeted, now))


async def after_change(
    session: AsyncSession, member: Member, program: Program, now: datetime
) -> int:
    """Complete the running challenges the member has now reached, and award the threshold
    badges it has earned. Call inside the unit of work that moved its metrics, with the member
    locked: completions of one member never race, and the unique (member, challenge, period)
    constraint stands behind that. Returns the points paid."""
    paid = 0
    for state in await progress(
        session, member.id, await running_for(session, member.id, now), now
    ):
        challenge = state.challenge
        if state.completed_at is not None or state.progress < challenge.goal:
            continue
        completion = ChallengeCompletion(
            member_id=member.id,
            challenge_id=challenge.id,
            period_start=state.period_start,
            completed_at=now,
        )
        session.add(completion)
        if challenge.reward_points > 0:
            entry = credit(
                session,
                member,
                program,
                kind=EntryKind.CHALLENGE,
                points=challenge.reward_points,
                now=now,
                description=f"Challenge completed: {challenge.name}",
                reference=f"challenge:{challenge.id}:{state.period_start:%Y-%m-%d}",
            )
            await session.flush()
            completion.entry_id = entry.id
            paid += challenge.reward_points
        await session.flush()
        record_challenge_completed(session, member.id, challenge.id, now)
        if challenge.badge_id is not None:
            await badges.award(session, member, challenge.badge_id, now)
    await badges.award_thresholds(session, member, now)
    return paid
