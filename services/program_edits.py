"""Editing what admins created of the program: tiers (changed, or retired with their members
moved off them) and promotions (changed, or ended now).

Each function works on the row its caller locked (`locked_tier`, `locked_promotion`), so two
admins editing different fields of one object both win; values are checked as at creation
(services.program), and every change to what earning reads bumps the catalog's version.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Promotion, Tier
from services.errors import Invalid, NotFound
from services.program import (
    bump_catalog_version,
    check_promotion_window,
    check_tier_clash,
    clean_promotion_fields,
    clean_tier_fields,
    flush_tier,
    get_program,
)
from services.tiers import TierChange, move_off, recompute_all

ID = ["input", "id"]


async def locked_tier(session: AsyncSession, tier_id: int) -> Tier:
    """A live tier, locked for the rest of the unit of work; NOT_FOUND if unknown or retired."""
    tier = await session.get(Tier, tier_id, with_for_update=True)
    if tier is None or tier.deleted_at is not None:
        raise NotFound("no such tier", field=ID)
    return tier


async def update_tier(
    session: AsyncSession, tier: Tier, changes: Mapping[str, Any], now: datetime
) -> Tier:
    """Change only the given fields; a new threshold places every member again."""
    changes = dict(changes)
    if tier.threshold == 0 and changes.get("threshold", 0) != 0:
        raise Invalid("the entry tier's threshold stays 0", field=["input", "threshold"])
    if tier.threshold == 0:
        changes.pop("threshold", None)  # 0 again: nothing to check or change
    clean = clean_tier_fields(changes)
    await check_tier_clash(
        session, name=clean.get("name"), threshold=clean.get("threshold"), excluding=tier.id
    )
    moved = clean.get("threshold", tier.threshold) != tier.threshold
    for name, value in clean.items():
        setattr(tier, name, value)
    await flush_tier(session)
    await bump_catalog_version(session)
    if moved:
        await recompute_all(session, await get_program(session), now)
    return tier


async def delete_tier(session: AsyncSession, tier: Tier, now: datetime) -> list[TierChange]:
    """Retire the tier (history still names it) and move its members to where their points
    place them now, each with a TIER_CHANGED event. The entry tier and a program's only tier
    stay. Rewards that name it as their minimum keep its threshold as their bar."""
    live = await session.scalar(select(func.count(Tier.id)).where(Tier.deleted_at.is_(None)))
    if (live or 0) <= 1:
        raise Invalid("a program's only tier cannot be deleted", field=ID)
    if tier.threshold == 0:
        raise Invalid("the entry tier cannot be deleted", field=ID)
    tier.deleted_at = now
    await session.flush()
    await bump_catalog_version(session)
    return await move_off(session, [tier.id], now)


async def locked_promotion(session: AsyncSession, promotion_id: int) -> Promotion:
    promotion = await session.get(Promotion, promotion_id, with_for_update=True)
    if promotion is None:
        raise NotFound("no such promotion", field=ID)
    return promotion


async def update_promotion(
    session: AsyncSession, promotion: Promotion, changes: Mapping[str, Any]
) -> Promotion:
    """Change only the given fields. Purchases already recorded keep what they earned."""
    for name, value in clean_promotion_fields(changes).items():
        setattr(promotion, name, value)
    check_promotion_window(promotion)
    await session.flush()
    await bump_catalog_version(session)
    return promotion


async def end_promotion(session: AsyncSession, promotion: Promotion, now: datetime) -> Promotion:
    """End it now: purchases made from now on earn without it. One that has not started yet
    never runs (its window closes at now); one already ended stays as it is."""
    if promotion.ends_at <= now:
        return promotion
    promotion.ends_at = now
    promotion.starts_at = min(promotion.starts_at, now)
    await session.flush()
    await bump_catalog_version(session)
    return promotion
