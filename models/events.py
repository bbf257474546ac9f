"""Member events: the outbox of live updates, written in the same transaction as the change.

A committed event is never lost: subscribers are told *that* a member has new events (a hint
over Redis pub/sub or the in-process bus), and read the events themselves from this table, in
id order. Every change of a member holds its row lock until commit, so one member's events
commit in id order, and "every event after my cursor" never skips one.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, Index, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, BigId, UtcDateTime
from models.ledger import LedgerEntry


class EventKind(enum.StrEnum):
    POINTS_UPDATED = "POINTS_UPDATED"
    TIER_CHANGED = "TIER_CHANGED"
    BADGE_AWARDED = "BADGE_AWARDED"
    CHALLENGE_COMPLETED = "CHALLENGE_COMPLETED"
    # For webhooks only (members' live subscriptions do not show them, see LIVE_KINDS):
    MEMBER_ENROLLED = "MEMBER_ENROLLED"
    MEMBER_UPDATED = "MEMBER_UPDATED"  # data: {"fields": [GraphQL names of what changed]}
    MEMBER_ERASED = "MEMBER_ERASED"
    POINTS_ACTIVATED = "POINTS_ACTIVATED"  # entry: the pending entry now available
    POINTS_EXPIRING = "POINTS_EXPIRING"  # data: {"points", "expiresAt"}
    REDEMPTION_USED = "REDEMPTION_USED"  # data: {"redemption"}
    REDEMPTION_CANCELLED = "REDEMPTION_CANCELLED"  # data: {"redemption"}
    REFERRAL_COMPLETED = "REFERRAL_COMPLETED"  # data: {"referred": member id}


# What a member's `memberEvents` / `pointsUpdated` subscriptions carry.
LIVE_KINDS = frozenset(
    {
        EventKind.POINTS_UPDATED,
        EventKind.TIER_CHANGED,
        EventKind.BADGE_AWARDED,
        EventKind.CHALLENGE_COMPLETED,
    }
)


class MemberEvent(Base):
    __tablename__ = "member_events"
    __table_args__ = (
        Index("ix_member_events_member_id_id", "member_id", "id"),
        # What the webhook dispatcher has still to look at (committed, not dispatched).
        Index(
            "ix_member_events_undispatched",
            "id",
            postgresql_where=text("NOT dispatched"),
            sqlite_where=text("NOT dispatched"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[EventKind] = mapped_column(Enum(EventKind, native_enum=False, length=30))
    # POINTS_UPDATED: the entry written.
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    # POINTS_UPDATED: the balances right after the entry; TIER_CHANGED: {"from", "to"} tier ids.
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Turned into its webhook events and deliveries (or found to have none): services.webhooks.
    dispatched: Mapped[bool] = mapped_column(default=False, server_default="false")

    # Set with the entry object before it has an id: the flush inserts the entry first.
    entry: Mapped[LedgerEntry | None] = relationship(lazy="raise")
