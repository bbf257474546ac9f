"""Partner brands: the calling brand, the list for admins, and creating one (with its key)."""

from __future__ import annotations

from sqlalchemy import select

import models
from schema.context import Info, Role
from schema.errors import UserError
from schema.inputs import CreatePartnerInput
from schema.payloads import CreatePartnerPayload
from schema.types.reward import Partner
from services import partners as partner_service
from services.errors import DomainError


async def partner(info: Info) -> Partner | None:
    """A partner key's own brand (null for admins, who have none: see `partners`)."""
    viewer = info.context.viewer
    if viewer.role is not Role.PARTNER or viewer.partner_slug is None:
        return None
    async with info.context.runtime.read_sessions() as session:
        try:
            row = await partner_service.find_partner(session, viewer.partner_slug)
        except DomainError:
            return None
    return Partner.from_row(row)


async def partners(info: Info) -> list[Partner]:
    async with info.context.runtime.read_sessions() as session:
        rows = await session.scalars(select(models.Partner).order_by(models.Partner.name))
        return [Partner.from_row(row) for row in rows]


async def create_partner(info: Info, input: CreatePartnerInput) -> CreatePartnerPayload:
    now = info.context.runtime.clock.now()
    try:
        async with info.context.runtime.sessions.begin() as session:
            created = await partner_service.create_partner(
                session, name=input.name, slug=input.slug, now=now
            )
    except DomainError as error:
        return CreatePartnerPayload(user_errors=[UserError.from_domain(error)])
    return CreatePartnerPayload(
        partner=Partner.from_row(created.partner), api_key=created.key.secret
    )
