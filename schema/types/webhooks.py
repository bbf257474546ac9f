"""Webhook endpoints, the events sent and their deliveries, as admins and partners see them
(never a secret: it is shown once, by the mutation that makes it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import strawberry
from strawberry.scalars import JSON

import models
from schema.context import Info
from schema.ids import encode_id
from schema.types.node import Node, PageInfo, page_of
from schema.types.reward import Partner
from services.webhooks.catalog import full_payload

WebhookEventType = strawberry.enum(models.WebhookEventType, name="WebhookEventType")
WebhookDeliveryStatus = strawberry.enum(models.DeliveryStatus, name="WebhookDeliveryStatus")


@strawberry.type
class WebhookEndpoint(Node):
    id: strawberry.ID
    url: str
    description: str | None
    event_types: list[models.WebhookEventType]
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    partner_pk: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, row: models.WebhookEndpoint) -> WebhookEndpoint:
        return cls(
            id=strawberry.ID(encode_id("WebhookEndpoint", row.id)),
            url=row.url,
            description=row.description,
            event_types=[models.WebhookEventType(t) for t in row.event_types],
            enabled=row.enabled,
            disabled_reason=row.disabled_reason,
            created_at=row.created_at,
            partner_pk=row.partner_id,
        )

    @strawberry.field  # set for an endpoint created with a partner key
    async def partner(self, info: Info) -> Partner | None:
        if self.partner_pk is None:
            return None
        found = await info.context.loaders.rewards.partner.load(self.partner_pk)
        return Partner.from_row(found) if found is not None else None


@strawberry.type
class WebhookEvent(Node):
    id: strawberry.ID  # also the payload's `id` and every attempt's `webhook-id`
    type: models.WebhookEventType
    occurred_at: datetime
    payload: JSON  # the body sent

    @classmethod
    def from_row(cls, row: models.WebhookEvent) -> WebhookEvent:
        return cls(
            id=strawberry.ID(encode_id("WebhookEvent", row.id)),
            type=row.type,
            occurred_at=row.occurred_at,
            payload=JSON(full_payload(row)),
        )


@strawberry.type
class WebhookAttempt:
    at: datetime
    status_code: int | None  # null when no response came (timeout, refused connection)
    latency_ms: int
    error: str | None


@strawberry.type
class WebhookDelivery(Node):
    id: strawberry.ID
    event: WebhookEvent
    endpoint: WebhookEndpoint
    status: models.DeliveryStatus
    attempts: list[WebhookAttempt]  # oldest first
    next_attempt_at: datetime | None

    @classmethod
    def from_rows(
        cls,
        row: models.WebhookDelivery,
        event: models.WebhookEvent,
        endpoint: models.WebhookEndpoint,
    ) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(encode_id("WebhookDelivery", row.id)),
            event=WebhookEvent.from_row(event),
            endpoint=WebhookEndpoint.from_row(endpoint),
            status=row.status,
            attempts=[
                WebhookAttempt(
                    at=datetime.fromisoformat(a["at"]),
                    status_code=a.get("statusCode"),
                    latency_ms=int(a.get("latencyMs", 0)),
                    error=a.get("error"),
                )
                for a in row.attempts
            ],
            next_attempt_at=(
                row.next_attempt_at if row.status is models.DeliveryStatus.PENDING else None
            ),
        )


@strawberry.type
class WebhookDeliveryEdge:
    cursor: str
    node: WebhookDelivery


@strawberry.type
class WebhookDeliveryConnection:
    edges: list[WebhookDeliveryEdge]
    page_info: PageInfo
    total_count: int

    @classmethod
    def from_page(
        cls,
        rows: Sequence[models.WebhookDelivery],
        events: dict[int, models.WebhookEvent],
        endpoints: dict[int, models.WebhookEndpoint],
        *,
        first: int,
        has_previous: bool,
        total: int,
    ) -> WebhookDeliveryConnection:
        edges, page_info = page_of(
            rows,
            first,
            lambda cursor, row: WebhookDeliveryEdge(
                cursor=cursor,
                node=WebhookDelivery.from_rows(
                    row, events[row.event_id], endpoints[row.endpoint_id]
                ),
            ),
            has_previous=has_previous,
        )
        return cls(edges=edges, page_info=page_info, total_count=total)
