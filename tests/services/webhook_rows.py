"""Builders for the delivery tests: endpoints, and events with their pending deliveries written
as the dispatcher writes them (without going through purchases, when a test needs thousands)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import (
    DeliveryStatus,
    EventKind,
    MemberEvent,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookEventType,
)
from services import members
from services.webhooks.catalog import API_VERSION
from services.webhooks.delivery import DeliveryRules
from services.webhooks.signing import new_secret
from services.webhooks.urls import UrlRules

LOOPBACK = UrlRules(production=False, allow_private=True)


def rules(**changes: Any) -> DeliveryRules:
    """Loopback allowed (the receiver runs on 127.0.0.1), else the production defaults."""
    return DeliveryRules(**{"urls": LOOPBACK, **changes})


async def add_endpoint(
    sessions: async_sessionmaker[AsyncSession],
    now: datetime,
    url: str,
    *,
    secret: str | None = None,
    **fields: Any,
) -> tuple[int, str]:
    """An enabled endpoint for every event type; its id and secret."""
    secret = secret or new_secret()
    async with sessions.begin() as session:
        row = WebhookEndpoint(
            url=url,
            event_types=[t.value for t in WebhookEventType],
            secret=secret,
            created_at=now,
            **{"enabled": True, **fields},
        )
        session.add(row)
        await session.flush()
        return row.id, secret


async def add_members(
    sessions: async_sessionmaker[AsyncSession],
    now: datetime,
    count: int,
    *,
    dispatched: bool = True,
) -> list[int]:
    """Members enrolled; their member.enrolled events already dispatched unless told not."""
    async with sessions.begin() as session:
        found = []
        for n in range(count):
            member = await members.enroll(
                session, email=f"m{n}@example.com", display_name=f"M {n}", now=now
            )
            found.append(member.id)
        if dispatched:
            await session.execute(
                update(MemberEvent).where(MemberEvent.member_id.in_(found)).values(dispatched=True),
                execution_options={"synchronize_session": False},
            )
        return found


async def add_events(
    sessions: async_sessionmaker[AsyncSession],
    now: datetime,
    member_ids: list[int],
    endpoint_ids: list[int],
    *,
    per_member: int = 1,
) -> list[int]:
    """`per_member` points.earned events for each member (round robin, so members interleave),
    each with a PENDING delivery due now to every endpoint; the event ids in order. The body's
    data says which member and which of its events (`seq`) it is."""
    async with sessions.begin() as session:
        outbox = [
            MemberEvent(
                member_id=member_id,
                kind=EventKind.POINTS_UPDATED,
                data={},
                created_at=now,
                dispatched=True,
            )
            for _ in range(per_member)
            for member_id in member_ids
        ]
        session.add_all(outbox)
        await session.flush()
        events = []
        for n, source in enumerate(outbox):
            events.append(
                WebhookEvent(
                    member_event_id=source.id,
                    audience="program",
                    partner_id=None,
                    type=WebhookEventType.POINTS_EARNED,
                    member_id=source.member_id,
                    occurred_at=now,
                    payload={
                        "type": "points.earned",
                        "timestamp": now.isoformat(),
                        "apiVersion": API_VERSION,
                        "data": {"member": source.member_id, "seq": n // len(member_ids)},
                    },
                )
            )
        session.add_all(events)
        await session.flush()
        session.add_all(
            WebhookDelivery(
                event_id=event.id,
                endpoint_id=endpoint_id,
                member_id=event.member_id,
                status=DeliveryStatus.PENDING,
                attempts=[],
                next_attempt_at=now,
                created_at=now,
            )
            for event in events
            for endpoint_id in endpoint_ids
        )
        return [event.id for event in events]


async def deliveries(
    sessions: async_sessionmaker[AsyncSession], endpoint_id: int | None = None
) -> list[WebhookDelivery]:
    async with sessions() as session:
        stmt = select(WebhookDelivery).order_by(WebhookDelivery.id)
        if endpoint_id is not None:
            stmt = stmt.where(WebhookDelivery.endpoint_id == endpoint_id)
        return list(await session.scalars(stmt))


async def endpoint_row(sessions: async_sessionmaker[AsyncSession], endpoint_id: int) -> Any:
    async with sessions() as session:
        return await session.get(WebhookEndpoint, endpoint_id)
