"""Webhooks: endpoints (admins: all; a partner key: its own, for its brand's redemptions),
their deliveries, and sending an event again. Every change is audited."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import models
from resolvers.common import audit_trail, given, unit_of_work
from schema.context import Context, Info, Role
from schema.errors import UserError
from schema.exceptions import BadUserInput, Forbidden
from schema.ids import decode_id, encode_id, expect_id
from schema.inputs import (
    CreateWebhookEndpointInput,
    DeleteWebhookEndpointInput,
    ResendWebhookEventInput,
    RotateWebhookSecretInput,
    UpdateWebhookEndpointInput,
)
from schema.pagination import after_id, page_size
from schema.payloads import (
    CreateWebhookEndpointPayload,
    DeleteWebhookEndpointPayload,
    ResendWebhookEventPayload,
    RotateWebhookSecretPayload,
    UpdateWebhookEndpointPayload,
)
from schema.types.webhooks import WebhookDelivery, WebhookDeliveryConnection, WebhookEndpoint
from services import audit
from services.errors import DomainError
from services.webhooks import endpoints as service


async def _partner_scope(ctx: Context) -> int | None:
    """None for an admin (every endpoint), the partner's id for a partner key."""
    if ctx.viewer.role is Role.ADMIN:
        return None
    slug = ctx.viewer.partner_slug
    async with ctx.runtime.read_sessions() as session:
        found = await session.scalar(select(models.Partner.id).where(models.Partner.slug == slug))
    if found is None:
        raise Forbidden("this partner key names no partner")
    return int(found)


def _gid(endpoint: models.WebhookEndpoint) -> str:
    return encode_id("WebhookEndpoint", endpoint.id)


async def webhook_endpoints(info: Info) -> list[WebhookEndpoint]:
    partner_id = await _partner_scope(info.context)
    async with info.context.runtime.read_sessions() as session:
        rows = await service.visible_endpoints(session, partner_id)
    return [WebhookEndpoint.from_row(row) for row in rows]


async def webhook_deliveries(
    info: Info,
    endpoint_id: strawberry.ID | None = None,
    status: models.DeliveryStatus | None = None,
    first: int | None = 20,
    after: str | None = None,
) -> WebhookDeliveryConnection:
    size = page_size(first)
    before_id = after_id(after)
    endpoint_pk = None
    if endpoint_id is not None:
        decoded = decode_id(endpoint_id)
        if decoded is None or decoded[0] != "WebhookEndpoint":
            raise BadUserInput("`endpointId` is not a WebhookEndpoint ID")
        endpoint_pk = decoded[1]
    partner_id = await _partner_scope(info.context)
    async with info.context.runtime.read_sessions() as session:
        rows, total = await service.deliveries_page(
            session,
            partner_id=partner_id,
            endpoint_id=endpoint_pk,
            status=status,
            first=size,
            before_id=before_id,
        )
        events, endpoints = await _related(session, rows)
    return WebhookDeliveryConnection.from_page(
        rows, events, endpoints, first=size, has_previous=before_id is not None, total=total
    )


async def _related(
    session: AsyncSession, rows: list[models.WebhookDelivery]
) -> tuple[dict[int, models.WebhookEvent], dict[int, models.WebhookEndpoint]]:
    """The events and endpoints of a page of deliveries: one query each."""
    event_ids = {row.event_id for row in rows}
    endpoint_ids = {row.endpoint_id for row in rows}
    events = {
        e.id: e
        for e in await session.scalars(
            select(models.WebhookEvent).where(models.WebhookEvent.id.in_(event_ids))
        )
    }
    endpoints = {
        e.id: e
        for e in await session.scalars(
            select(models.WebhookEndpoint).where(models.WebhookEndpoint.id.in_(endpoint_ids))
        )
    }
    return events, endpoints


async def create_webhook_endpoint(
    info: Info, input: CreateWebhookEndpointInput
) -> CreateWebhookEndpointPayload:
    ctx = info.context
    partner_id = await _partner_scope(ctx)

    async def work(session: AsyncSession) -> service.Issued:
        issued = await service.create_endpoint(
            session,
            url=input.url,
            event_types=input.event_types,
            description=input.description,
            partner_id=partner_id,
            rules=ctx.runtime.webhook_urls,
            now=ctx.runtime.clock.now(),
        )
        after = audit.fields(issued.endpoint, service.AUDITED_FIELDS)
        audit_trail(info, session, _gid(issued.endpoint), None, after)
        return issued

    result = await unit_of_work(ctx, work)
    if isinstance(result, UserError):
        return CreateWebhookEndpointPayload(user_errors=[result])
    return CreateWebhookEndpointPayload(
        endpoint=WebhookEndpoint.from_row(result.endpoint), secret=result.secret
    )


async def _endpoint_change(
    info: Info, raw_id: str, change: Any
) -> tuple[models.WebhookEndpoint, Any] | UserError:
    """Lock the caller's endpoint `raw_id`, apply `change(session, endpoint)`, audit it."""
    ctx = info.context
    partner_id = await _partner_scope(ctx)
    try:
        endpoint_id = expect_id(raw_id, "WebhookEndpoint", ["input", "id"])
    except DomainError as error:
        return UserError.from_domain(error)

    async def work(session: AsyncSession) -> tuple[models.WebhookEndpoint, Any]:
        endpoint = await service.locked_endpoint(session, endpoint_id, partner_id, ["input", "id"])
        before = audit.fields(endpoint, service.AUDITED_FIELDS)
        outcome = await change(session, endpoint)
        deleted = endpoint.deleted_at is not None
        after = None if deleted else audit.fields(endpoint, service.AUDITED_FIELDS)
        audit_trail(info, session, _gid(endpoint), before, after)
        return endpoint, outcome

    return await unit_of_work(ctx, work)


async def update_webhook_endpoint(
    info: Info, input: UpdateWebhookEndpointInput
) -> UpdateWebhookEndpointPayload:
    rules = info.context.runtime.webhook_urls
    now = info.context.runtime.clock.now()

    async def change(session: AsyncSession, endpoint: models.WebhookEndpoint) -> None:
        await service.update_endpoint(session, endpoint, given(input), rules=rules, now=now)

    result = await _endpoint_change(info, input.id, change)
    if isinstance(result, UserError):
        return UpdateWebhookEndpointPayload(user_errors=[result])
    return UpdateWebhookEndpointPayload(endpoint=WebhookEndpoint.from_row(result[0]))


async def rotate_webhook_secret(
    info: Info, input: RotateWebhookSecretInput
) -> RotateWebhookSecretPayload:
    now = info.context.runtime.clock.now()

    async def change(session: AsyncSession, endpoint: models.WebhookEndpoint) -> str:
        return await service.rotate_secret(session, endpoint, now)

    result = await _endpoint_change(info, input.id, change)
    if isinstance(result, UserError):
        return RotateWebhookSecretPayload(user_errors=[result])
    endpoint, secret = result
    return RotateWebhookSecretPayload(endpoint=WebhookEndpoint.from_row(endpoint), secret=secret)


async def delete_webhook_endpoint(
    info: Info, input: DeleteWebhookEndpointInput
) -> DeleteWebhookEndpointPayload:
    now = info.context.runtime.clock.now()

    async def change(session: AsyncSession, endpoint: models.WebhookEndpoint) -> None:
        await service.delete_endpoint(session, endpoint, now)

    result = await _endpoint_change(info, input.id, change)
    if isinstance(result, UserError):
        return DeleteWebhookEndpointPayload(user_errors=[result])
    return DeleteWebhookEndpointPayload(deleted_endpoint_id=strawberry.ID(_gid(result[0])))


async def resend_webhook_event(
    info: Info, input: ResendWebhookEventInput
) -> ResendWebhookEventPayload:
    ctx = info.context
    partner_id = await _partner_scope(ctx)
    now = ctx.runtime.clock.now()
    try:
        event_id = expect_id(input.event_id, "WebhookEvent", ["input", "eventId"])
        endpoint_id = expect_id(input.endpoint_id, "WebhookEndpoint", ["input", "endpointId"])
    except DomainError as error:
        return ResendWebhookEventPayload(user_errors=[UserError.from_domain(error)])

    async def work(session: AsyncSession) -> WebhookDelivery:
        endpoint = await service.locked_endpoint(
            session, endpoint_id, partner_id, ["input", "endpointId"]
        )
        delivery = await service.resend(session, event_id=event_id, endpoint=endpoint, now=now)
        event = await session.get(models.WebhookEvent, delivery.event_id)
        assert event is not None
        audit_trail(
            info,
            session,
            _gid(endpoint),
            {},
            {"resent": encode_id("WebhookEvent", event.id)},
        )
        return WebhookDelivery.from_rows(delivery, event, endpoint)

    result = await unit_of_work(ctx, work)
    if isinstance(result, UserError):
        return ResendWebhookEventPayload(user_errors=[result])
    ctx.runtime.webhooks_wake()
    return ResendWebhookEventPayload(delivery=result)
