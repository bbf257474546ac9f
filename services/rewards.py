"""The rewards catalog: what admins create and change, and who may redeem what, when."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Partner, Redemption, RedemptionStatus, Reward, RewardKind, Tier
from services.errors import Invalid, NotFound
from services.program import MAX_POINTS, clean_text, positive_decimal
from services.segments import segments_containing
from services.targeting import check_segment

MAX_MONEY = Decimal(1_000_000)
MAX_STOCK = 100_000_000
MAX_PER_MEMBER = 10_000


def is_available(reward: Any, now: datetime) -> bool:
    """In stock and inside its dates (who may redeem it is another question)."""
    return (
        (reward.stock is None or reward.stock > 0)
        and (reward.starts_at is None or reward.starts_at <= now)
        and (reward.ends_at is None or reward.ends_at > now)
    )


def open_now(now: datetime) -> ColumnElement[bool]:
    """SQL: rewards inside their dates and in stock, as `is_available`."""
    return and_(
        or_(Reward.stock.is_(None), Reward.stock > 0),
        or_(Reward.starts_at.is_(None), Reward.starts_at <= now),
        or_(Reward.ends_at.is_(None), Reward.ends_at > now),
    )


def not_ended(now: datetime) -> ColumnElement[bool]:
    """SQL: rewards the catalog still shows (upcoming ones included)."""
    return or_(Reward.ends_at.is_(None), Reward.ends_at > now)


def from_active_partner() -> ColumnElement[bool]:
    """SQL: rewards of no partner or of an active one (a deactivated partner's rewards leave
    the catalog; services.redemptions refuses them)."""
    # NOT IN a (small, hashed) set rather than a correlated NOT EXISTS: a page ordered by id
    # still reads only the rows it returns.
    deactivated = select(Partner.id).where(Partner.deactivated_at.is_not(None))
    return or_(Reward.partner_id.is_(None), Reward.partner_id.not_in(deactivated))


def for_audience(
    segments: Collection[int] | None, tier_threshold: int | None, now: datetime
) -> ColumnElement[bool]:
    """SQL: rewards that exist for a caller in `segments` with a tier of `tier_threshold`
    (None, None: a caller who is no member): untargeted ones or those of its segments, and
    before their public start, early-access ones only for their audience."""
    targeted = Reward.segment_id.is_(None)
    public = or_(
        Reward.early_access_starts_at.is_(None),
        Reward.starts_at.is_(None),
        Reward.starts_at <= now,
    )
    if segments is None or tier_threshold is None:
        return and_(targeted, public)
    at_or_above = select(Tier.id).where(Tier.threshold <= tier_threshold)
    return and_(
        or_(targeted, Reward.segment_id.in_(list(segments))),
        or_(
            public,
            Reward.early_access_segment_id.in_(list(segments)),
            Reward.early_access_tier_id.in_(at_or_above),
        ),
    )


def redeemable_from(now: datetime) -> ColumnElement[bool]:
    """SQL: rewards in stock and inside their dates, or inside their early access (whose
    audience `for_audience` decides)."""
    return and_(
        or_(Reward.stock.is_(None), Reward.stock > 0),
        or_(
            Reward.starts_at.is_(None),
            Reward.starts_at <= now,
            Reward.early_access_starts_at <= now,
        ),
        or_(Reward.ends_at.is_(None), Reward.ends_at > now),
    )


async def audience_segments(session: AsyncSession, member_id: int, now: datetime) -> frozenset[int]:
    """The member's segments among those the catalog's rewards are targeted or open early to."""
    rows = await session.execute(
        select(Reward.segment_id, Reward.early_access_segment_id)
        .where(
            or_(Reward.segment_id.is_not(None), Reward.early_access_segment_id.is_not(None)),
            not_ended(now),
        )
        .distinct()
    )
    ids = {pk for row in rows for pk in row if pk is not None}
    return await segments_containing(session, member_id, ids, now)


async def create_reward(
    session: AsyncSession,
    *,
    name: str,
    description: str,
    kind: RewardKind,
    cost: int,
    value: float | None,
    partner_id: int | None,
    minimum_tier_id: int | None,
    stock: int | None,
    starts_at: datetime | None,
    ends_at: datetime | None,
    per_member_limit: int | None,
    settlement_amount: float | None,
    now: datetime,
    segment_id: int | None = None,
    early_access_starts_at: datetime | None = None,
    early_access_tier_id: int | None = None,
    early_access_segment_id: int | None = None,
) -> Reward:
    await check_segment(session, segment_id, ["input", "segmentId"])
    await _check_early_access(
        session,
        starts_at=starts_at,
        early_access_starts_at=early_access_starts_at,
        tier_id=early_access_tier_id,
        segment_id=early_access_segment_id,
    )
    partner = await session.get(Partner, partner_id) if partner_id is not None else None
    if partner_id is not None and (partner is None or partner.deactivated_at is not None):
        raise NotFound("no such partner", field=["input", "partnerId"])
    tier = await session.get(Tier, minimum_tier_id) if minimum_tier_id is not None else None
    if minimum_tier_id is not None and (tier is None or tier.deleted_at is not None):
        raise NotFound("no such tier", field=["input", "minimumTierId"])
    if settlement_amount is not None and partner_id is None:
        raise Invalid(
            "only co-branded rewards (with a partnerId) settle with a partner",
            field=["input", "settlementAmount"],
        )
    if kind is RewardKind.DONATION and value is None:
        raise Invalid(
            "a donation needs the money value one redemption gives", field=["input", "value"]
        )
    reward = Reward(
        kind=kind,
        value=_value(kind, value),
        partner_id=partner_id,
        minimum_tier_id=minimum_tier_id,
        per_member_limit=_optional_count(
            per_member_limit, ["input", "perMemberLimit"], minimum=1, maximum=MAX_PER_MEMBER
        ),
        settlement_amount=(
            positive_decimal(settlement_amount, ["input", "settlementAmount"], maximum=MAX_MONEY)
            if settlement_amount is not None
            else None
        ),
        created_at=now,
        segment_id=segment_id,
        early_access_starts_at=early_access_starts_at,
        early_access_tier_id=early_access_tier_id,
        early_access_segment_id=early_access_segment_id,
    )
    _apply(
        reward,
        {
            "name": name,
            "description": description,
            "cost": cost,
            "stock": stock,
            "starts_at": starts_at,
            "ends_at": ends_at,
        },
    )
    session.add(reward)
    await session.flush()
    return reward


async def _check_early_access(
    session: AsyncSession,
    *,
    starts_at: datetime | None,
    early_access_starts_at: datetime | None,
    tier_id: int | None,
    segment_id: int | None,
) -> None:
    """VIP early access: a start before the public one, for a tier (and above) or a segment."""
    if early_access_starts_at is None:
        for name, given in (("earlyAccessTierId", tier_id), ("earlyAccessSegmentId", segment_id)):
            if given is not None:
                raise Invalid(f"{name} needs earlyAccessStartsAt", field=["input", name])
        return
    field = ["input", "earlyAccessStartsAt"]
    if starts_at is None:
        raise Invalid("early access needs the public startsAt", field=field)
    if early_access_starts_at >= starts_at:
        raise Invalid("earlyAccessStartsAt must be before startsAt", field=field)
    if tier_id is None and segment_id is None:
        raise Invalid("early access needs earlyAccessTierId or earlyAccessSegmentId", field=field)
    if tier_id is not None:
        tier = await session.get(Tier, tier_id)
        if tier is None or tier.deleted_at is not None:
            raise NotFound("no such tier", field=["input", "earlyAccessTierId"])
    await check_segment(session, segment_id, ["input", "earlyAccessSegmentId"])


async def locked_reward(session: AsyncSession, reward_id: int) -> Reward:
    reward = await session.get(Reward, reward_id, with_for_update=True)
    if reward is None:
        raise NotFound("no such reward", field=["input", "id"])
    return reward


async def update_reward(
    session: AsyncSession, reward: Reward, changes: Mapping[str, Any]
) -> Reward:
    """Change only the given fields of the locked reward; an explicit null clears stock
    (unlimited) or a date."""
    _apply(reward, changes)
    await session.flush()
    return reward


def _apply(reward: Reward, changes: Mapping[str, Any]) -> None:
    for name, value in changes.items():
        field = ["input", _camel(name)]
        if name == "name":
            reward.name = clean_text(_required(value, field), field, max_length=200)
        elif name == "description":
            text = _required(value, field).strip()
            if len(text) > 2000:
                raise Invalid("must be at most 2000 characters", field=field)
            reward.description = text
        elif name == "cost":
            cost = _required(value, field)
            if not 1 <= cost <= MAX_POINTS:
                raise Invalid("cost must be between 1 and 1,000,000,000 points", field=field)
            reward.cost = cost
        elif name == "stock":
            reward.stock = _optional_count(value, field, minimum=0, maximum=MAX_STOCK)
        elif name in ("starts_at", "ends_at"):
            setattr(reward, name, value)
        else:
            raise AssertionError(f"not a reward field: {name}")
    if reward.starts_at and reward.ends_at and reward.ends_at <= reward.starts_at:
        raise Invalid("endsAt must be after startsAt", field=["input", "endsAt"])
    early = reward.early_access_starts_at
    if early is not None and (reward.starts_at is None or reward.starts_at <= early):
        raise Invalid("startsAt must stay after earlyAccessStartsAt", field=["input", "startsAt"])


def _value(kind: RewardKind, value: float | None) -> Decimal | None:
    if value is None:
        return None
    maximum = Decimal(100) if kind is RewardKind.DISCOUNT_PERCENT else MAX_MONEY
    return positive_decimal(value, ["input", "value"], maximum=maximum)


def _required(value: Any, field: list[str]) -> Any:
    if value is None:
        raise Invalid("must not be null", field=field)
    return value


def _optional_count(
    value: int | None, field: list[str], *, minimum: int, maximum: int
) -> int | None:
    if value is not None and not minimum <= value <= maximum:
        raise Invalid(f"must be between {minimum:,} and {maximum:,}", field=field)
    return value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


async def recommended(
    session: AsyncSession,
    *,
    member_id: int,
    available: int,
    tier_threshold: int,
    now: datetime,
    first: int,
) -> list[Reward]:
    """Rewards the member may redeem (dates, stock, tier, per-member limit, its segments and
    early access), the most valuable it can afford now first (by cost), then the ones it is
    closest to affording."""
    minimum = Tier.__table__.alias("minimum_tier")
    redeemed = (
        select(func.count(Redemption.id))
        .where(
            Redemption.member_id == member_id,
            Redemption.reward_id == Reward.id,
            Redemption.status != RedemptionStatus.CANCELLED,
        )
        .correlate(Reward)
        .scalar_subquery()
    )
    affordable = Reward.cost <= available
    segments = await audience_segments(session, member_id, now)
    stmt = (
        select(Reward)
        .outerjoin(minimum, minimum.c.id == Reward.minimum_tier_id)
        .where(
            redeemable_from(now),
            for_audience(segments, tier_threshold, now),
            from_active_partner(),
            # A retired minimum tier is still the bar: its threshold.
            or_(Reward.minimum_tier_id.is_(None), minimum.c.threshold <= tier_threshold),
            or_(Reward.per_member_limit.is_(None), redeemed < Reward.per_member_limit),
        )
        .order_by(
            case((affordable, 0), else_=1),
            case((affordable, -Reward.cost), else_=Reward.cost),
            Reward.id,
        )
        .limit(first)
    )
    return list(await session.scalars(stmt))
