"""The program's settings, tiers and promotions: read by every earn, changed only by admins."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models import PROGRAM_ID, Program, Promotion, Reward, Segment, Tier
from services.errors import AlreadyExists, Invalid, NotFound

DEFAULT_PROGRAM: dict[str, Any] = {
    "name": "Laurel Rewards",
    "currency": "USD",
    "points_per_currency_unit": Decimal(1),
    "point_value": Decimal("0.01"),
    "pending_days": 0,
    "expiry_days": None,
    "signup_bonus": 0,
    "referral_bonus": 0,
    "review_points": 0,
    "social_share_points": 0,
    "birthday_points": 0,
    "anniversary_points": 0,
    "tier_window_days": None,
    "daily_activity_cap": 10,
    "expiry_reminder_days": None,
    "referral_welcome_points": 0,
    "referral_welcome_reward_id": None,
}
ENTRY_TIER_NAME = "Member"
MAX_POINTS = 1_000_000_000  # any single setting or award above this is a typo, not a program
MAX_MULTIPLIER = Decimal(100)


async def ensure_program(session: AsyncSession, **overrides: Any) -> Program:
    """Create the program row and its entry tier (threshold 0) when missing."""
    program = await session.get(Program, PROGRAM_ID)
    if program is None:
        program = Program(id=PROGRAM_ID, **{**DEFAULT_PROGRAM, **overrides})
        session.add(program)
    entry = await session.scalar(select(Tier).where(Tier.threshold == 0))
    if entry is None:
        session.add(Tier(name=ENTRY_TIER_NAME, threshold=0, multiplier=Decimal(1), benefits=[]))
    # Imported here: services.activity_types builds on this module's checks.
    from services.activity_types import ensure_builtins

    await ensure_builtins(session, datetime.now(UTC))
    await session.flush()
    return program


async def get_program(session: AsyncSession) -> Program:
    program = await session.get(Program, PROGRAM_ID)
    if program is None:
        raise RuntimeError("the program is not set up: run `laurel migrate` (or `laurel demo`)")
    return program


_INT_SETTINGS = {
    "pending_days": (0, 3650),
    "expiry_days": (1, 36500),
    "signup_bonus": (0, MAX_POINTS),
    "referral_bonus": (0, MAX_POINTS),
    "review_points": (0, MAX_POINTS),
    "social_share_points": (0, MAX_POINTS),
    "birthday_points": (0, MAX_POINTS),
    "anniversary_points": (0, MAX_POINTS),
    "tier_window_days": (1, 36500),
    "daily_activity_cap": (0, 10_000),
    "expiry_reminder_days": (1, 365),
    "referral_welcome_points": (0, MAX_POINTS),
}
_NULLABLE = {
    "expiry_days",
    "tier_window_days",
    "expiry_reminder_days",
    "referral_welcome_reward_id",
}


async def update_program(session: AsyncSession, changes: Mapping[str, Any]) -> Program:
    """Apply only the given settings; None clears the nullable ones (never / lifetime)."""
    program = await get_program(session)
    for name, value in changes.items():
        field = ["input", _camel(name)]
        if value is None and name not in _NULLABLE:
            raise Invalid(f"{_camel(name)} cannot be null", field=field)
        if name == "name":
            program.name = clean_text(value, field, max_length=200)
        elif name == "currency":
            if not (isinstance(value, str) and len(value) == 3 and value.isalpha()):
                raise Invalid("currency must be a three-letter ISO 4217 code", field=field)
            program.currency = value.upper()
        elif name == "points_per_currency_unit":
            program.points_per_currency_unit = positive_decimal(value, field, maximum=10_000)
        elif name == "point_value":
            program.point_value = positive_decimal(value, field, maximum=1_000_000)
        elif name == "referral_welcome_reward_id":
            if value is not None and await session.get(Reward, value) is None:
                raise NotFound("no such reward", field=field)
            program.referral_welcome_reward_id = value
        elif name in _INT_SETTINGS:
            low, high = _INT_SETTINGS[name]
            if value is not None and not low <= value <= high:
                raise Invalid(f"{_camel(name)} must be between {low} and {high}", field=field)
            setattr(program, name, value)
        else:
            raise Invalid(f"unknown setting {name}", field=field)
    await bump_catalog_version(session)
    await session.flush()
    return program


async def bump_catalog_version(session: AsyncSession) -> None:
    await session.execute(
        update(Program)
        .where(Program.id == PROGRAM_ID)
        .values(catalog_version=Program.catalog_version + 1),
        execution_options={"synchronize_session": False},
    )


async def catalog_version(session: AsyncSession) -> int:
    return int(await session.scalar(select(Program.catalog_version)) or 0)


async def list_tiers(session: AsyncSession) -> list[Tier]:
    """The live tiers (deleted ones are retired, not gone), by threshold."""
    return list(
        await session.scalars(
            select(Tier).where(Tier.deleted_at.is_(None)).order_by(Tier.threshold)
        )
    )


async def retired_tiers(session: AsyncSession) -> list[Tier]:
    """Deleted tiers: members' history and events still name them."""
    return list(
        await session.scalars(
            select(Tier).where(Tier.deleted_at.is_not(None)).order_by(Tier.threshold)
        )
    )


def tier_for(qualifying_points: int, tiers: Sequence[Tier], floor: Tier | None = None) -> Tier:
    """The highest tier whose threshold the points reach (tiers sorted by threshold), and never
    one below the member's `floor` (a tier an import brought over)."""
    reached = max(qualifying_points, floor.threshold) if floor is not None else qualifying_points
    chosen = tiers[0]
    for tier in tiers:
        if tier.threshold <= reached:
            chosen = tier
    return chosen


async def create_tier(
    session: AsyncSession, *, name: str, threshold: int, multiplier: float, benefits: list[str]
) -> Tier:
    fields = clean_tier_fields(
        {"name": name, "threshold": threshold, "multiplier": multiplier, "benefits": benefits}
    )
    await check_tier_clash(session, name=fields["name"], threshold=fields["threshold"])
    tier = Tier(**fields)
    session.add(tier)
    await flush_tier(session)
    await bump_catalog_version(session)
    return tier


def clean_tier_fields(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The given tier fields (name, threshold, multiplier, benefits), checked; null is INVALID."""
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        field = ["input", name]
        if value is None:
            raise Invalid(f"{name} cannot be null", field=field)
        if name == "name":
            clean[name] = clean_text(value, field, max_length=100)
        elif name == "threshold":
            if not 0 < value <= MAX_POINTS:
                # The entry tier (threshold 0) always exists; other tiers sit above it.
                raise Invalid("threshold must be between 1 and 1,000,000,000", field=field)
            clean[name] = value
        elif name == "multiplier":
            clean[name] = positive_decimal(value, field, maximum=MAX_MULTIPLIER)
        elif name == "benefits":
            if len(value) > 50:
                raise Invalid("at most 50 benefits", field=field)
            clean[name] = [clean_text(b, field, max_length=200) for b in value]
        else:
            raise AssertionError(f"not a tier field: {name}")
    return clean


async def check_tier_clash(
    session: AsyncSession, *, name: str | None, threshold: int | None, excluding: int | None = None
) -> None:
    """ALREADY_EXISTS when another live tier has this name or threshold (retired tiers free
    theirs)."""
    wanted = [Tier.name == name] if name is not None else []
    if threshold is not None:
        wanted.append(Tier.threshold == threshold)
    if not wanted:
        return
    stmt = select(Tier.name).where(Tier.deleted_at.is_(None), or_(*wanted))
    if excluding is not None:
        stmt = stmt.where(Tier.id != excluding)
    clash = (await session.execute(stmt.limit(1))).first()
    if clash is not None:
        field = "name" if clash.name == name else "threshold"
        raise AlreadyExists(f"a tier with this {field} already exists", field=["input", field])


async def flush_tier(session: AsyncSession) -> None:
    """Flush a new or changed tier; a concurrent clash on the unique indexes is ALREADY_EXISTS."""
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists("a tier with this name or threshold already exists") from exc


async def active_promotions(session: AsyncSession, at: datetime) -> list[Promotion]:
    stmt = (
        select(Promotion)
        .where(Promotion.starts_at <= at, Promotion.ends_at > at)
        .order_by(Promotion.starts_at, Promotion.id)
    )
    return list(await session.scalars(stmt))


async def current_and_upcoming_promotions(session: AsyncSession, now: datetime) -> list[Promotion]:
    stmt = select(Promotion).where(Promotion.ends_at > now).order_by(Promotion.starts_at)
    return list(await session.scalars(stmt))


async def create_promotion(
    session: AsyncSession,
    *,
    name: str,
    multiplier: float,
    starts_at: datetime,
    ends_at: datetime,
    control_share: float | None = None,
    segment_id: int | None = None,
) -> Promotion:
    """control_share: run it as an experiment holding out this share (services.experiments)."""
    fields = clean_promotion_fields(
        {"name": name, "multiplier": multiplier, "starts_at": starts_at, "ends_at": ends_at}
    )
    if segment_id is not None and await session.get(Segment, segment_id) is None:
        raise NotFound("no such segment", field=["input", "segmentId"])
    promotion = Promotion(**fields, segment_id=segment_id)
    if control_share is not None:
        # Imported here: services.experiments reads segments, which read this module.
        from services.experiments import check_control_share

        field = ["input", "experiment", "controlShare"]
        promotion.experiment_control_share = check_control_share(control_share, field)
    check_promotion_window(promotion)
    session.add(promotion)
    await session.flush()
    await bump_catalog_version(session)
    return promotion


def clean_promotion_fields(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The given promotion fields (name, multiplier, starts_at, ends_at), checked; null is
    INVALID. The window is checked on the promotion they make (`check_promotion_window`)."""
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        field = ["input", _camel(name)]
        if value is None:
            raise Invalid(f"{_camel(name)} cannot be null", field=field)
        if name == "name":
            clean[name] = clean_text(value, field, max_length=200)
        elif name == "multiplier":
            clean[name] = positive_decimal(value, field, maximum=MAX_MULTIPLIER)
        elif name in ("starts_at", "ends_at"):
            clean[name] = value
        else:
            raise AssertionError(f"not a promotion field: {name}")
    return clean


def check_promotion_window(promotion: Promotion) -> None:
    if promotion.ends_at <= promotion.starts_at:
        raise Invalid("endsAt must be after startsAt", field=["input", "endsAt"])


def positive_decimal(value: float, field: list[str], *, maximum: float | Decimal) -> Decimal:
    """A finite, positive number no larger than `maximum`, as an exact Decimal."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise Invalid("must be a number", field=field)
    if isinstance(value, float) and not math.isfinite(value):
        raise Invalid("must be a finite number", field=field)
    number = Decimal(str(value))
    if not Decimal(0) < number <= Decimal(maximum):
        raise Invalid(f"must be greater than 0 and at most {maximum}", field=field)
    return number


def clean_text(value: str, field: list[str], *, max_length: int) -> str:
    """Stripped, non-blank text no longer than `max_length`."""
    text = value.strip()
    if not text:
        raise Invalid("must not be blank", field=field)
    if len(text) > max_length:
        raise Invalid(f"must be at most {max_length} characters", field=field)
    return text


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
