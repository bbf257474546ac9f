"""From committed member events to webhook events and deliveries.

Every change writes member events in its own transaction (the outbox; `MemberEvent`), so an
event exists only once its change committed, and never for one rolled back. The dispatcher
reads the events not dispatched yet (a partial index keeps that cheap), in id order, turns each
into the webhook events its audiences want (services.webhooks.catalog) with one PENDING
delivery per endpoint that wants it, and marks them dispatched, all in one transaction. One
dispatcher runs at a time (a PostgreSQL advisory lock; SQLite has one writer anyway), so a
member's events (which commit in id order: each change holds the member's row lock) get their
deliveries in that order.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    DeliveryStatus,
    MemberEvent,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookEventType,
)
from services.webhooks.catalog import PARTNER, Loaded, classify, plan

# The advisory lock the dispatcher holds for its transaction (any number is fine if unique).
DISPATCH_LOCK = 7_411_200_001


async def live_endpoints(session: AsyncSession) -> list[WebhookEndpoint]:
    """Endpoints that receive new events: enabled and not deleted."""
    return list(
        await session.scalars(
            select(WebhookEndpoint).where(
                WebhookEndpoint.enabled.is_(True), WebhookEndpoint.deleted_at.is_(None)
            )
        )
    )


async def dispatch(session: AsyncSession, now: datetime, *, limit: int = 500) -> int:
    """Dispatch up to `limit` committed member events; returns how many were handled (0: none
    was waiting, or another dispatcher is at work)."""
    if session.get_bind().dialect.name == "postgresql" and not await session.scalar(
        select(func.pg_try_advisory_xact_lock(DISPATCH_LOCK))
    ):
        return 0
    events = list(
        await session.scalars(
            select(MemberEvent)
            .where(MemberEvent.dispatched.is_(False))
            .order_by(MemberEvent.id)
            .limit(limit)
        )
    )
    if not events:
        return 0
    endpoints = await live_endpoints(session)
    if endpoints:
        await _fan_out(session, events, endpoints, now)
    await session.execute(
        update(MemberEvent)
        .where(MemberEvent.id.in_([event.id for event in events]))
        .values(dispatched=True),
        execution_options={"synchronize_session": False},
    )
    return len(events)


async def _fan_out(
    session: AsyncSession,
    events: list[MemberEvent],
    endpoints: list[WebhookEndpoint],
    now: datetime,
) -> None:
    program_wants: dict[WebhookEventType, list[WebhookEndpoint]] = defaultdict(list)
    partner_wants: dict[tuple[int, WebhookEventType], list[WebhookEndpoint]] = defaultdict(list)
    for endpoint in endpoints:
        for name in endpoint.event_types:
            type_ = WebhookEventType(name)
            if endpoint.partner_id is None:
                program_wants[type_].append(endpoint)
            else:
                partner_wants[(endpoint.partner_id, type_)].append(endpoint)
    entries = await Loaded.entries_of(session, events)
    wanted_types = set(program_wants) | {type_ for _, type_ in partner_wants}
    kinds = {
        classify(e, entries.get(e.entry_id) if e.entry_id is not None else None) for e in events
    }
    if not kinds & wanted_types:
        return  # nothing any endpoint listens to: no object is read
    loaded = Loaded()
    await loaded.load(session, events, entries)
    planned = plan(events, loaded, set(program_wants), set(partner_wants))
    if not planned:
        return
    rows = [
        WebhookEvent(
            member_event_id=p.member_event.id,
            audience=p.audience,
            partner_id=p.partner_id,
            type=p.type,
            member_id=p.member_event.member_id,
            occurred_at=p.member_event.created_at,
            payload=p.payload,
        )
        for p in planned
    ]
    session.add_all(rows)
    await session.flush()
    deliveries = []
    for p, row in zip(planned, rows, strict=True):
        targets = (
            partner_wants[(p.partner_id, p.type)]
            if p.audience == PARTNER and p.partner_id is not None
            else program_wants[p.type]
        )
        deliveries += [
            {
                "event_id": row.id,
                "endpoint_id": endpoint.id,
                "member_id": row.member_id,
                "status": DeliveryStatus.PENDING,
                "attempts": [],
                "next_attempt_at": now,
                "created_at": now,
            }
            for endpoint in targets
        ]
    if deliveries:
        await session.execute(insert(WebhookDelivery), deliveries)
