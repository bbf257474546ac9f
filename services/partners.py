"""Partner brands: created by admins with their API key, settled for their co-branded rewards."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models import ApiKey, KeyRole, Partner, Redemption, RedemptionStatus
from services.access import IssuedKey, create_api_key
from services.errors import AlreadyExists, Invalid, NotFound
from services.program import clean_text

SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class NewPartner:
    partner: Partner
    key: IssuedKey  # its first API key, shown once


@dataclass(frozen=True, slots=True)
class Settlement:
    redemptions: int
    points_redeemed: int
    amount_owed: Decimal


def clean_slug(value: str, field: list[str]) -> str:
    slug = value.strip().lower()
    if not SLUG.fullmatch(slug):
        raise Invalid(
            "a slug is 1-50 lowercase letters, digits and inner hyphens, e.g. acme-coffee",
            field=field,
        )
    return slug


async def create_partner(
    session: AsyncSession, *, name: str, slug: str, now: datetime
) -> NewPartner:
    name = clean_text(name, ["input", "name"], max_length=200)
    slug = clean_slug(slug, ["input", "slug"])
    if await session.scalar(select(Partner.id).where(Partner.slug == slug)) is not None:
        raise AlreadyExists("a partner with this slug already exists", field=["input", "slug"])
    partner = Partner(name=name, slug=slug, created_at=now)
    session.add(partner)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent create with the same slug
        raise AlreadyExists(
            "a partner with this slug already exists", field=["input", "slug"]
        ) from exc
    key = await create_api_key(
        session, role=KeyRole.PARTNER, name=f"{name} (partner)", now=now, partner_slug=slug
    )
    return NewPartner(partner=partner, key=key)


async def find_partner(session: AsyncSession, slug: str) -> Partner:
    partner = await session.scalar(select(Partner).where(Partner.slug == slug))
    if partner is None:
        raise NotFound(f"no partner with slug {slug!r}", field=["partner"])
    return partner


async def settlements(
    session: AsyncSession, *, partner_ids: Sequence[int], start: datetime, end: datetime
) -> dict[int, Settlement]:
    """Each partner's redemptions made in [start, end), cancelled ones excluded, at the
    settlement terms each had when it was redeemed: one query for any number of partners."""
    if end <= start:
        raise Invalid("`to` must be after `from`", field=["to"])
    rows = await session.execute(
        select(
            Redemption.partner_id,
            func.count(Redemption.id),
            func.coalesce(func.sum(Redemption.points), 0),
            func.coalesce(func.sum(Redemption.settlement_amount), 0),
        )
        .where(
            Redemption.partner_id.in_(partner_ids),
            Redemption.created_at >= start,
            Redemption.created_at < end,
            Redemption.status != RedemptionStatus.CANCELLED,
        )
        .group_by(Redemption.partner_id)
    )
    found = {
        int(partner_id): Settlement(int(count), int(points), Decimal(amount))
        for partner_id, count, points, amount in rows
    }
    return {p: found.get(p, Settlement(0, 0, Decimal(0))) for p in partner_ids}


async def locked_partner(session: AsyncSession, partner_id: int) -> Partner:
    partner = await session.get(Partner, partner_id, with_for_update=True)
    if partner is None:
        raise NotFound("no such partner", field=["input", "id"])
    return partner


async def update_partner(
    session: AsyncSession, partner: Partner, changes: Mapping[str, Any]
) -> bool:
    """Change only the given fields (a deactivated partner is NOT_FOUND). A new slug moves the
    partner's API keys with it. Returns whether the slug changed (who may call changed)."""
    if partner.deactivated_at is not None:
        raise NotFound("no such partner (it was deactivated)", field=["input", "id"])
    for name, value in changes.items():
        field = ["input", name]
        if value is None:
            raise Invalid(f"{name} cannot be null", field=field)
        if name == "name":
            partner.name = clean_text(value, field, max_length=200)
        elif name != "slug":
            raise AssertionError(f"not a partner field: {name}")
    old_slug = partner.slug
    slug = clean_slug(changes["slug"], ["input", "slug"]) if "slug" in changes else old_slug
    if slug == old_slug:
        await session.flush()
        return False
    taken = select(Partner.id).where(Partner.slug == slug, Partner.id != partner.id)
    if await session.scalar(taken) is not None:
        raise AlreadyExists("a partner with this slug already exists", field=["input", "slug"])
    partner.slug = slug
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:  # a concurrent create or rename to the same slug
        raise AlreadyExists(
            "a partner with this slug already exists", field=["input", "slug"]
        ) from exc
    await session.execute(
        update(ApiKey).where(ApiKey.partner_slug == old_slug).values(partner_slug=slug),
        execution_options={"synchronize_session": False},
    )
    return True


async def deactivate_partner(session: AsyncSession, partner: Partner, now: datetime) -> bool:
    """Deactivate the partner: its keys are refused, its rewards leave the catalog, its
    settlements stay. Returns whether it was active until now (deactivating is idempotent)."""
    if partner.deactivated_at is not None:
        return False
    partner.deactivated_at = now
    await session.flush()
    return True
