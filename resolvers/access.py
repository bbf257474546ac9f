"""API keys: listed, created and revoked by admins (never showing a secret again)."""

from __future__ import annotations

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from models import KeyRole, Partner
from resolvers.common import audit_trail, unit_of_work
from schema.context import Info
from schema.errors import UserError
from schema.ids import encode_id, expect_id
from schema.inputs import CreateApiKeyInput, RevokeApiKeyInput
from schema.pagination import after_id, page_size
from schema.payloads import CreateApiKeyPayload, RevokeApiKeyPayload
from schema.types.access import ApiKey, ApiKeyConnection
from services import access, audit
from services.access import IssuedKey
from services.errors import DomainError, Invalid, NotFound


async def api_keys(
    info: Info, first: int | None = 20, after: str | None = None
) -> ApiKeyConnection:
    size = page_size(first)
    before_id = after_id(after)
    sessions = info.context.runtime.read_sessions
    async with sessions() as session:
        rows = await access.list_api_keys(session, first=size, before_id=before_id)

    async def count() -> int:
        async with sessions() as session:
            return await access.count_api_keys(session)

    return ApiKeyConnection.from_page(
        rows, first=size, has_previous=before_id is not None, count=count
    )


async def create_api_key(info: Info, input: CreateApiKeyInput) -> CreateApiKeyPayload:
    ctx = info.context
    now = ctx.runtime.clock.now()

    async def work(session: AsyncSession) -> IssuedKey:
        partner_slug = await _partner_slug(session, input.role, input.partner_id)
        issued = await access.create_api_key(
            session, role=input.role, name=input.name, now=now, partner_slug=partner_slug
        )
        audit_trail(
            info,
            session,
            encode_id("ApiKey", issued.key.id),
            None,
            audit.fields(issued.key, access.AUDITED_FIELDS),
        )
        return issued

    result = await unit_of_work(ctx, work)
    if isinstance(result, UserError):
        return CreateApiKeyPayload(user_errors=[result])
    return CreateApiKeyPayload(api_key=ApiKey.from_row(result.key), secret=result.secret)


async def _partner_slug(
    session: AsyncSession, role: KeyRole, partner_id: strawberry.ID | None
) -> str | None:
    field = ["input", "partnerId"]
    if role is not KeyRole.PARTNER:
        if partner_id is not None:
            raise Invalid("only PARTNER keys are bound to a partner", field=field)
        return None
    if partner_id is None:
        raise Invalid("a PARTNER key needs partnerId", field=field)
    partner = await session.get(Partner, expect_id(partner_id, "Partner", field))
    if partner is None:
        raise NotFound("no such partner", field=field)
    if partner.deactivated_at is not None:
        raise Invalid("this partner is deactivated", field=field)
    return partner.slug


async def revoke_api_key(info: Info, input: RevokeApiKeyInput) -> RevokeApiKeyPayload:
    ctx = info.context
    now = ctx.runtime.clock.now()
    try:
        key_id = expect_id(input.id, "ApiKey", ["input", "id"])
    except DomainError as error:
        return RevokeApiKeyPayload(user_errors=[UserError.from_domain(error)])

    async def work(session: AsyncSession) -> ApiKey:
        key = await access.revoke_api_key(session, key_id, now)
        after = audit.fields(key, access.AUDITED_FIELDS)
        before = after | {"revokedAt": None} if key.revoked_at == now else after
        audit_trail(info, session, encode_id("ApiKey", key.id), before, after)
        return ApiKey.from_row(key)

    result = await unit_of_work(ctx, work)
    if isinstance(result, UserError):
        return RevokeApiKeyPayload(user_errors=[result])
    # Committed: every process refuses the key from its next request on, before we answer.
    await ctx.runtime.credentials_changed()
    return RevokeApiKeyPayload(api_key=result)
