"""Activity types: what earns points beyond purchases (a survey, a newsletter sign-up), with
caps per period, an optional segment and tier multipliers; paid by services.ledger.activity.

The built-ins `review` and `social_share` are rows like the others (seeded by the migration and
by `ensure_builtins`), so entries, global IDs and `activityTypes` name them alike; their points
and daily cap stay the program's settings (reviewPoints, socialSharePoints, dailyActivityCap),
one place for each, and they cannot be edited here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models import ActivityType, EntryKind, Segment
from services.errors import AlreadyExists, Invalid, NotFound
from services.program import MAX_POINTS, clean_text

# Built-in key -> (name, the entry kind it pays).
BUILT_INS: dict[str, tuple[str, EntryKind]] = {
    "review": ("Review", EntryKind.REVIEW),
    "social_share": ("Social share", EntryKind.SOCIAL_SHARE),
}
BUILT_IN_KEY = {kind: key for key, (_, kind) in BUILT_INS.items()}
CAPS = ("per_day", "per_week", "per_month", "lifetime")
_KEY = re.compile(r"[a-z0-9_]{1,64}")
MAX_CAP = 1_000_000


async def ensure_builtins(session: AsyncSession, now: datetime) -> None:
    """The built-in rows, where a database was made without migrations (tests, `create_all`)."""
    present = set(await session.scalars(select(ActivityType.key)))
    for key, (name, _) in BUILT_INS.items():
        if key not in present:
            session.add(
                ActivityType(
                    key=key,
                    name=name,
                    points=0,
                    tier_multiplier_applies=False,
                    built_in=True,
                    active=True,
                    created_at=now,
                )
            )
    await session.flush()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _points(value: int) -> int:
    if not 0 < value <= MAX_POINTS:
        raise Invalid(f"points must be between 1 and {MAX_POINTS:,}", field=["input", "points"])
    return value


def _caps(caps: Mapping[str, int | None]) -> dict[str, int | None]:
    """The caps given (snake_case names), each null or at least 1."""
    for name, value in caps.items():
        if value is not None and not 1 <= value <= MAX_CAP:
            field = ["input", "caps", _camel(name)]
            raise Invalid(f"a cap must be between 1 and {MAX_CAP:,}", field=field)
    return dict(caps)


async def _segment(session: AsyncSession, segment_id: int | None) -> int | None:
    if segment_id is not None and await session.get(Segment, segment_id) is None:
        raise NotFound("no such segment", field=["input", "segmentId"])
    return segment_id


async def _flush(session: AsyncSession) -> None:
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:  # a concurrent create took the key
        raise AlreadyExists(
            "an activity type with this key exists", field=["input", "key"]
        ) from exc


async def create_activity_type(
    session: AsyncSession,
    *,
    key: str,
    name: str,
    points: int,
    caps: Mapping[str, int | None],
    segment_id: int | None,
    tier_multiplier_applies: bool,
    now: datetime,
) -> ActivityType:
    if not _KEY.fullmatch(key):
        raise Invalid("a key is 1 to 64 of a-z, 0-9 and _", field=["input", "key"])
    clean = clean_text(name, ["input", "name"], max_length=200)
    row = ActivityType(
        key=key,
        name=clean,
        points=_points(points),
        segment_id=await _segment(session, segment_id),
        tier_multiplier_applies=tier_multiplier_applies,
        built_in=False,
        active=True,
        created_at=now,
        **{cap: None for cap in CAPS},
    )
    for cap, value in _caps(caps).items():
        setattr(row, cap, value)
    if await session.scalar(select(ActivityType.id).where(ActivityType.key == key)) is not None:
        raise AlreadyExists("an activity type with this key exists", field=["input", "key"])
    session.add(row)
    await _flush(session)
    return row


async def locked_activity_type(session: AsyncSession, activity_type_id: int) -> ActivityType:
    row = await session.get(ActivityType, activity_type_id, with_for_update=True)
    if row is None:
        raise NotFound("no such activity type", field=["input", "id"])
    return row


async def update_activity_type(
    session: AsyncSession, row: ActivityType, changes: Mapping[str, Any]
) -> ActivityType:
    """Only the given fields change (`caps`: only the caps given); None clears a cap or the
    segment."""
    if row.built_in:
        raise Invalid(
            "a built-in activity type follows the program's settings (updateProgram)",
            field=["input", "id"],
        )
    for name, value in changes.items():
        field = ["input", _camel(name)]
        if name == "name":
            if value is None:
                raise Invalid("must not be null", field=field)
            row.name = clean_text(value, field, max_length=200)
        elif name == "points":
            if value is None:
                raise Invalid("must not be null", field=field)
            row.points = _points(value)
        elif name == "caps":
            for cap, limit in _caps(value).items():
                setattr(row, cap, limit)
        elif name == "segment_id":
            row.segment_id = await _segment(session, value)
        elif name in ("tier_multiplier_applies", "active"):
            if value is None:
                raise Invalid("must not be null", field=field)
            setattr(row, name, bool(value))
        else:
            raise AssertionError(f"not an activity type setting: {name}")
    await session.flush()
    return row


async def activity_types(session: AsyncSession) -> list[ActivityType]:
    """Every type, built-ins first, then by key."""
    stmt = select(ActivityType).order_by(ActivityType.built_in.desc(), ActivityType.key)
    return list(await session.scalars(stmt))


async def by_key(session: AsyncSession, key: str) -> ActivityType:
    row = await session.scalar(select(ActivityType).where(ActivityType.key == key))
    if row is None:
        raise NotFound("no such activity type", field=["input", "activityType"])
    return row


async def using_segment(session: AsyncSession, segment_id: int) -> list[ActivityType]:
    """The activity types only the segment's members earn (they keep it from being deleted)."""
    stmt = select(ActivityType).where(ActivityType.segment_id == segment_id)
    return list(await session.scalars(stmt.order_by(ActivityType.key)))


def audited(row: ActivityType) -> dict[str, Any]:
    """What the audit trail keeps of a type."""
    return {
        "key": row.key,
        "name": row.name,
        "points": row.points,
        "caps": {_camel(cap): getattr(row, cap) for cap in CAPS},
        "segmentId": row.segment_id,
        "tierMultiplierApplies": row.tier_multiplier_applies,
        "active": row.active,
    }
