"""Points for activities: the built-in reviews and social shares (their kinds, the program's
points and daily cap) and admin-defined activity types (ACTIVITY entries, their own points,
caps, segment and tier multiplier). Once per (member, activity type, reference)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import ActivityType, EntryKind, LedgerEntry, Member, Program
from services.activity_types import BUILT_INS, CAPS, by_key
from services.catalog import Catalog, current_catalog
from services.errors import Invalid, LimitReached, NotEligible
from services.gamification import challenges
from services.ledger.earning import _fmt
from services.ledger.entries import credit, lock_member, settle
from services.ledger.idempotency import claim, record_result
from services.ledger.purchases import LedgerResult, reference_key, replay
from services.segments import is_member
from services.tiers import refresh_tier

ACTIVITY_KINDS = {EntryKind.REVIEW: "review", EntryKind.SOCIAL_SHARE: "social share"}
_CAP_WORDS = {"per_day": "a day", "per_week": "a week", "per_month": "a month", "lifetime": "ever"}


async def record_activity(
    session: AsyncSession,
    *,
    member_id: int,
    reference: str,
    now: datetime,
    kind: EntryKind | None = None,
    activity_type: str | None = None,
    actor: str = "system",
    catalog: Catalog | None = None,
) -> LedgerResult:
    """Pay an activity named by `kind` (REVIEW, SOCIAL_SHARE), by `activity_type` (a key), or
    both when they agree; kind None is CUSTOM, which needs a key."""
    custom: ActivityType | None = None
    if activity_type is not None:
        named = BUILT_INS.get(activity_type)
        if named is None:
            custom = await by_key(session, activity_type)
            if kind is not None:
                raise Invalid(
                    f"{activity_type!r} is paid with kind CUSTOM", field=["input", "kind"]
                )
        elif kind is not None and kind is not named[1]:
            raise Invalid(f"{activity_type!r} is kind {named[1].value}", field=["input", "kind"])
        else:
            kind = named[1]
    if kind is None and custom is None:
        raise Invalid("kind CUSTOM names its activityType", field=["input", "activityType"])
    if kind is not None and kind not in ACTIVITY_KINDS:
        raise Invalid("not an activity kind", field=["input", "kind"])
    reference = reference_key(reference, ["input", "reference"])
    # Built-ins keep their scope: the same review by `kind` or by key is one award.
    named_by = f"type-{custom.id}" if custom is not None else kind.value if kind else ""
    scope = f"activity:{member_id}:{named_by}"
    claimed = await claim(session, scope=scope, key=reference, request={}, now=now)
    if claimed.first_use is not None:
        return await replay(session, claimed.first_use.entry_id)

    # The row lock serializes the member's writes: the counts below see every award before.
    member = await lock_member(session, member_id)
    await settle(session, member, now)
    catalog = await current_catalog(session, catalog, now)
    if custom is None:
        assert kind is not None
        entry = await _pay_built_in(session, member, catalog.program, kind, reference, now, actor)
    else:
        entry = await _pay_custom(session, member, catalog, custom, reference, now, actor)
    if catalog.gamified_at(now):
        await session.flush()
        await challenges.after_change(session, member, catalog.program, now)
    await refresh_tier(session, member, catalog.program, catalog.tiers, now)
    await session.flush()
    await record_result(session, claimed, entry_id=entry.id)
    return LedgerResult(entry=entry, member=member)


async def _pay_built_in(
    session: AsyncSession,
    member: Member,
    program: Program,
    kind: EntryKind,
    reference: str,
    now: datetime,
    actor: str,
) -> LedgerEntry:
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = await session.scalar(
        select(func.count()).where(
            LedgerEntry.member_id == member.id,
            LedgerEntry.kind == kind,
            LedgerEntry.created_at >= start_of_day,
        )
    )
    if (today or 0) >= program.daily_activity_cap:
        raise LimitReached(
            f"at most {program.daily_activity_cap} {ACTIVITY_KINDS[kind]} awards a day",
            field=["input", "kind"],
        )
    points = program.review_points if kind is EntryKind.REVIEW else program.social_share_points
    return credit(
        session,
        member,
        program,
        kind=kind,
        points=points,
        now=now,
        description=f"{ACTIVITY_KINDS[kind].capitalize()} {reference}",
        reference=reference,
        actor=actor,
    )


def period_starts(now: datetime) -> dict[str, datetime | None]:
    """When each cap's current UTC period began (lifetime: never)."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "per_day": day,
        "per_week": day - timedelta(days=day.weekday()),  # ISO weeks start on Monday
        "per_month": day.replace(day=1),
        "lifetime": None,
    }


async def _awards(
    session: AsyncSession, member_id: int, activity_type: ActivityType, now: datetime
) -> dict[str, int]:
    """The member's awards of the type in each capped period so far, in one statement."""
    capped = [cap for cap in CAPS if getattr(activity_type, cap) is not None]
    if not capped:
        return {}
    starts = period_starts(now)
    columns = [
        func.count()
        if starts[cap] is None
        else func.coalesce(func.sum(case((LedgerEntry.created_at >= starts[cap], 1), else_=0)), 0)
        for cap in capped
    ]
    row = (
        await session.execute(
            select(*columns).where(
                LedgerEntry.member_id == member_id,
                LedgerEntry.activity_type_id == activity_type.id,
            )
        )
    ).one()
    return {cap: int(count) for cap, count in zip(capped, row, strict=True)}


async def _pay_custom(
    session: AsyncSession,
    member: Member,
    catalog: Catalog,
    activity_type: ActivityType,
    reference: str,
    now: datetime,
    actor: str,
) -> LedgerEntry:
    field = ["input", "activityType"]
    if not activity_type.active:
        raise NotEligible(f"{activity_type.name!r} pays nothing now", field=field)
    if activity_type.segment_id is not None and not await is_member(
        session, activity_type.segment_id, member.id, now
    ):
        raise NotEligible(
            f"{activity_type.name!r} is for a segment the member is not in", field=field
        )
    for cap, count in (await _awards(session, member.id, activity_type, now)).items():
        limit: int = getattr(activity_type, cap)
        if count >= limit:
            raise LimitReached(
                f"at most {limit} {activity_type.name!r} award{'s' if limit != 1 else ''}"
                f" {_CAP_WORDS[cap]}",
                field=field,
            )
    points = activity_type.points
    breakdown: list[dict[str, Any]] = [{"label": activity_type.name, "points": points}]
    if activity_type.tier_multiplier_applies:
        tier = catalog.tier(member.tier_id)
        if tier.multiplier != 1:
            multiplied = math.floor(points * tier.multiplier)
            label = f"{tier.name} tier x{_fmt(tier.multiplier)}"
            breakdown.append({"label": label, "points": multiplied - points})
            points = multiplied
    entry = credit(
        session,
        member,
        catalog.program,
        kind=EntryKind.ACTIVITY,
        points=points,
        now=now,
        description=f"{activity_type.name} {reference}",
        reference=reference,
        breakdown=breakdown,
        actor=actor,
    )
    entry.activity_type_id = activity_type.id
    return entry
