"""Webhooks: endpoints that receive program events, the events as sent, and each delivery of
an event to an endpoint with its attempts.

Events come from the member events outbox (`MemberEvent`, written in the transaction of every
change): the dispatcher turns each committed one into the webhook events of its audiences and
a delivery per endpoint that wants it, once (`MemberEvent.dispatched`). Workers then lease
due deliveries (`FOR UPDATE SKIP LOCKED`), attempt them and record each attempt.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Enum,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, UtcDateTime


class WebhookEventType(enum.StrEnum):
    """The event catalog; on the wire, lower case with a dot (`points.earned`)."""

    MEMBER_ENROLLED = "MEMBER_ENROLLED"
    MEMBER_UPDATED = "MEMBER_UPDATED"
    MEMBER_ERASED = "MEMBER_ERASED"
    POINTS_EARNED = "POINTS_EARNED"
    POINTS_REVERSED = "POINTS_REVERSED"
    POINTS_ACTIVATED = "POINTS_ACTIVATED"
    POINTS_EXPIRING = "POINTS_EXPIRING"
    POINTS_EXPIRED = "POINTS_EXPIRED"
    TIER_CHANGED = "TIER_CHANGED"
    REWARD_REDEEMED = "REWARD_REDEEMED"
    REDEMPTION_USED = "REDEMPTION_USED"
    REDEMPTION_CANCELLED = "REDEMPTION_CANCELLED"
    CHALLENGE_COMPLETED = "CHALLENGE_COMPLETED"
    BADGE_AWARDED = "BADGE_AWARDED"
    REFERRAL_COMPLETED = "REFERRAL_COMPLETED"

    @property
    def wire_name(self) -> str:
        return self.value.lower().replace("_", ".", 1)


# What a partner's endpoint may receive: its own brand's redemptions, no member data.
PARTNER_EVENT_TYPES = frozenset(
    {
        WebhookEventType.REWARD_REDEEMED,
        WebhookEventType.REDEMPTION_USED,
        WebhookEventType.REDEMPTION_CANCELLED,
    }
)


class DeliveryStatus(enum.StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(500))
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(default=True)
    # Why the server disabled it (410 Gone, failing for three days); null when an admin did.
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    # Set for an endpoint a partner key created: it hears only of its brand's rewards.
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"), index=True)
    # "whsec_" + base64: kept to sign (never logged, shown once); the previous one signs
    # beside it until `previous_secret_until` after a rotation.
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The first failed attempt since the last success: three days of failing disable it.
    failing_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class WebhookEvent(Base):
    """One event as sent to one audience: the program's endpoints (member data included), or
    one partner's (its brand's redemptions, no member data). The id is the `webhook-id`."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("member_event_id", "audience"),
        # A member's events (erasure scrubs what they hold of it).
        Index("ix_webhook_events_member_id_id", "member_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_event_id: Mapped[int] = mapped_column(ForeignKey("member_events.id"))
    audience: Mapped[str] = mapped_column(String(20))  # "program" or "partner"
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    type: Mapped[WebhookEventType] = mapped_column(
        Enum(WebhookEventType, native_enum=False, length=30)
    )
    member_id: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class WebhookDelivery(Base):
    """One event to one endpoint: pending until a 2xx, or failed for good."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # Due deliveries, soonest first (the workers' claim).
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'PENDING'"),
            sqlite_where=text("status = 'PENDING'"),
        ),
        # One member's earlier pending deliveries to the same endpoint go first (commit order).
        Index(
            "ix_webhook_deliveries_pending_order",
            "endpoint_id",
            "member_id",
            "event_id",
            postgresql_where=text("status = 'PENDING'"),
            sqlite_where=text("status = 'PENDING'"),
        ),
        # An endpoint's due deliveries: a claim steps over a dead endpoint's backlog at once.
        Index(
            "ix_webhook_deliveries_endpoint_due",
            "endpoint_id",
            "next_attempt_at",
            postgresql_where=text("status = 'PENDING'"),
            sqlite_where=text("status = 'PENDING'"),
        ),
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
        Index("ix_webhook_deliveries_event_id", "event_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_events.id"))
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"))
    member_id: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(DeliveryStatus, native_enum=False, length=10)
    )
    # [{"at", "statusCode", "latencyMs", "error"}, ...], oldest first.
    attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # A worker holds it until then (a worker that died lets it go at that moment).
    leased_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
