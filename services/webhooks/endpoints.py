"""Webhook endpoints: created by admins (every event type) or by a partner key (its brand's
redemptions only), each with its own signing secret, shown once and rotated with a day of
overlap; deliveries listed and events sent again on request."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    PARTNER_EVENT_TYPES,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookEventType,
)
from services.errors import DomainError, ErrorCode, Invalid, NotFound
from services.program import clean_text
from services.webhooks.catalog import PARTNER, PROGRAM
from services.webhooks.delivery import fail_pending
from services.webhooks.signing import ROTATION_OVERLAP, new_secret
from services.webhooks.urls import UrlRules

MAX_ENDPOINTS = 50
# An endpoint's fields as the audit trail records them (never its secret).
AUDITED_FIELDS = {
    "url": "url",
    "eventTypes": "event_types",
    "enabled": "enabled",
    "description": "description",
}
DELETED = "the endpoint was deleted"


class PartnerNotAllowed(DomainError):
    code = ErrorCode.FORBIDDEN


@dataclass(frozen=True, slots=True)
class Issued:
    endpoint: WebhookEndpoint
    secret: str  # shown once


def _event_types(values: Sequence[WebhookEventType], partner_id: int | None) -> list[str]:
    field = ["input", "eventTypes"]
    if not values:
        raise Invalid("list at least one event type", field=field)
    if partner_id is not None and set(values) - PARTNER_EVENT_TYPES:
        raise PartnerNotAllowed(
            "a partner's endpoint receives reward.redeemed, redemption.used and "
            "redemption.cancelled only",
            field=field,
        )
    return sorted({WebhookEventType(v).value for v in values})


def _description(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return clean_text(value, ["input", "description"], max_length=500)


async def create_endpoint(
    session: AsyncSession,
    *,
    url: str,
    event_types: Sequence[WebhookEventType],
    description: str | None,
    partner_id: int | None,
    rules: UrlRules,
    now: datetime,
) -> Issued:
    types = _event_types(event_types, partner_id)
    clean_url = await rules.check(url)
    live = await session.scalar(
        select(func.count()).select_from(WebhookEndpoint).where(_owned_by(partner_id))
    )
    if (live or 0) >= MAX_ENDPOINTS:
        raise Invalid(f"at most {MAX_ENDPOINTS} endpoints", field=["input", "url"])
    secret = new_secret()
    endpoint = WebhookEndpoint(
        url=clean_url,
        description=_description(description),
        event_types=types,
        enabled=True,
        partner_id=partner_id,
        secret=secret,
        created_at=now,
    )
    session.add(endpoint)
    await session.flush()
    return Issued(endpoint, secret)


def _owned_by(partner_id: int | None) -> ColumnElement[bool]:
    live = WebhookEndpoint.deleted_at.is_(None)
    if partner_id is None:
        return live
    return live & (WebhookEndpoint.partner_id == partner_id)


async def visible_endpoints(session: AsyncSession, partner_id: int | None) -> list[WebhookEndpoint]:
    """Every live endpoint (admin: `partner_id` None), or the partner's own."""
    return list(
        await session.scalars(
            select(WebhookEndpoint).where(_owned_by(partner_id)).order_by(WebhookEndpoint.id)
        )
    )


async def locked_endpoint(
    session: AsyncSession, endpoint_id: int, partner_id: int | None, field: Sequence[str]
) -> WebhookEndpoint:
    """A live endpoint the caller may act on (an admin: any; a partner: its own), locked."""
    endpoint = await session.get(WebhookEndpoint, endpoint_id, with_for_update=True)
    if (
        endpoint is None
        or endpoint.deleted_at is not None
        or (partner_id is not None and endpoint.partner_id != partner_id)
    ):
        raise NotFound("no such webhook endpoint", field=field)
    return endpoint


async def update_endpoint(
    session: AsyncSession,
    endpoint: WebhookEndpoint,
    changes: Mapping[str, Any],
    *,
    rules: UrlRules,
    now: datetime,
) -> WebhookEndpoint:
    """Only the given fields; enabling an endpoint the server disabled clears the reason, and
    disabling one fails what it had pending."""
    for name, value in changes.items():
        if name == "url":
            if value is None:
                raise Invalid("url cannot be null", field=["input", "url"])
            endpoint.url = await rules.check(value)
        elif name == "event_types":
            if value is None:
                raise Invalid("eventTypes cannot be null", field=["input", "eventTypes"])
            endpoint.event_types = _event_types(value, endpoint.partner_id)
        elif name == "description":
            endpoint.description = _description(value)
        elif name == "enabled":
            if value is None:
                raise Invalid("enabled is true or false", field=["input", "enabled"])
            was_enabled, endpoint.enabled = endpoint.enabled, value
            if value:
                endpoint.disabled_reason = None
                endpoint.failing_since = None
            elif was_enabled:
                await fail_pending(session, [endpoint.id], now)
        else:
            raise Invalid(f"{name} cannot be changed", field=["input", name])
    await session.flush()
    return endpoint


async def rotate_secret(session: AsyncSession, endpoint: WebhookEndpoint, now: datetime) -> str:
    """A new secret; the old one keeps signing beside it for ROTATION_OVERLAP."""
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = now + ROTATION_OVERLAP
    endpoint.secret = new_secret()
    await session.flush()
    return endpoint.secret


async def delete_endpoint(session: AsyncSession, endpoint: WebhookEndpoint, now: datetime) -> None:
    """Gone from listings and from every new event; what it had pending fails."""
    endpoint.deleted_at = now
    endpoint.enabled = False
    await fail_pending(session, [endpoint.id], now)
    await session.flush()


async def resend(
    session: AsyncSession,
    *,
    event_id: int,
    endpoint: WebhookEndpoint,
    now: datetime,
) -> WebhookDelivery:
    """The event once more to the endpoint, as a new delivery (the same `webhook-id`)."""
    event = await session.get(WebhookEvent, event_id)
    audience_fits = event is not None and (
        (event.audience == PROGRAM and endpoint.partner_id is None)
        or (event.audience == PARTNER and event.partner_id == endpoint.partner_id)
    )
    if event is None or not audience_fits:
        raise NotFound("no such webhook event for this endpoint", field=["input", "eventId"])
    if not endpoint.enabled:
        raise Invalid("the endpoint is disabled: enable it first", field=["input", "endpointId"])
    delivery = WebhookDelivery(
        event_id=event.id,
        endpoint_id=endpoint.id,
        member_id=event.member_id,
        status=DeliveryStatus.PENDING,
        attempts=[],
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    await session.flush()
    return delivery


async def deliveries_page(
    session: AsyncSession,
    *,
    partner_id: int | None,
    endpoint_id: int | None,
    status: DeliveryStatus | None,
    first: int,
    before_id: int | None,
) -> tuple[list[WebhookDelivery], int]:
    """Newest first (up to first + 1 rows), with the count of every match."""
    conditions: list[ColumnElement[bool]] = []
    if endpoint_id is not None:
        conditions.append(WebhookDelivery.endpoint_id == endpoint_id)
    if status is not None:
        conditions.append(WebhookDelivery.status == status)
    if partner_id is not None:
        own = select(WebhookEndpoint.id).where(WebhookEndpoint.partner_id == partner_id)
        conditions.append(WebhookDelivery.endpoint_id.in_(own))
    stmt = select(WebhookDelivery).where(*conditions).order_by(WebhookDelivery.id.desc())
    if before_id is not None:
        stmt = stmt.where(WebhookDelivery.id < before_id)
    rows = list(await session.scalars(stmt.limit(first + 1)))
    total = await session.scalar(
        select(func.count()).select_from(WebhookDelivery).where(*conditions)
    )
    return rows, int(total or 0)
