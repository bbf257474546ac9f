"""Partner brands: created by admins with their API key, settled for their co-branded rewards."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models import KeyRole, Partner, Redemption, RedemptionStatus
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
