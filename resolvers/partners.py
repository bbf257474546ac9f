"""Partner brands: the calling brand, the list for admins, and creating one (with its key)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

import models
from resolvers.common import audit_trail, given
from schema.context import Info, Role
from schema.errors import UserError
from schema.ids import encode_id, expect_id
from schema.inputs import CreatePartnerInput, DeactivatePartnerInput, UpdatePartnerInput
from schema.payloads import CreatePartnerPayload, DeactivatePartnerPayload, UpdatePartnerPayload
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
            row = created.partner
            audit_trail(info, session, encode_id("Partner", row.id), None, _audited(row))
    except DomainError as error:
        return CreatePartnerPayload(user_errors=[UserError.from_domain(error)])
    return CreatePartnerPayload(
        partner=Partner.from_row(created.partner), api_key=created.key.secret
    )


async def update_partner(info: Info, input: UpdatePartnerInput) -> UpdatePartnerPayload:
    try:
        partner_id = expect_id(input.id, "Partner", ["input", "id"])
        async with info.context.runtime.sessions.begin() as session:
            row = await partner_service.locked_partner(session, partner_id)
            before = _audited(row)
            slug_changed = await partner_service.update_partner(session, row, given(input))
            audit_trail(info, session, encode_id("Partner", row.id), before, _audited(row))
    except DomainError as error:
        return UpdatePartnerPayload(user_errors=[UserError.from_domain(error)])
    if slug_changed:  # its keys now name the new slug: no process may keep the old binding
        await info.context.runtime.credentials_changed()
    return UpdatePartnerPayload(partner=Partner.from_row(row))


async def deactivate_partner(info: Info, input: DeactivatePartnerInput) -> DeactivatePartnerPayload:
    now = info.context.runtime.clock.now()
    try:
        partner_id = expect_id(input.id, "Partner", ["input", "id"])
        async with info.context.runtime.sessions.begin() as session:
            row = await partner_service.locked_partner(session, partner_id)
            before = _audited(row)
            deactivated = await partner_service.deactivate_partner(session, row, now)
            audit_trail(info, session, encode_id("Partner", row.id), before, _audited(row))
    except DomainError as error:
        return DeactivatePartnerPayload(user_errors=[UserError.from_domain(error)])
    if deactivated:  # its keys are refused from now on, in every process
        await info.context.runtime.credentials_changed()
    return DeactivatePartnerPayload(partner=Partner.from_row(row))


def _audited(row: models.Partner) -> dict[str, Any]:
    """What the audit trail keeps of a partner, under the GraphQL names."""
    return {"name": row.name, "slug": row.slug, "active": row.deactivated_at is None}
