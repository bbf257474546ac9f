"""The append-only points ledger.

Every change of a balance is a `LedgerEntry`. Positive POSTED/PENDING entries are also *lots*:
`remaining` is how much of them is still unspent, and spending draws lots soonest-expiring first.
Only `status` (PENDING -> POSTED on activation) and `remaining` ever change after insert.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Computed,
    Enum,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, UtcDateTime

# A purchase's amount less refunds, in cents: exact on PostgreSQL (numeric), rounded on SQLite
# (floating point). The same expression on both, so the migration (0021) and the model agree.
NET_CENTS = "CAST(ROUND((amount - refunded_amount) * 100) AS BIGINT)"


class EntryKind(enum.StrEnum):
    PURCHASE = "PURCHASE"
    SIGNUP = "SIGNUP"
    REFERRAL = "REFERRAL"
    REVIEW = "REVIEW"
    SOCIAL_SHARE = "SOCIAL_SHARE"
    BIRTHDAY = "BIRTHDAY"
    ANNIVERSARY = "ANNIVERSARY"
    CHALLENGE = "CHALLENGE"
    PROMOTION = "PROMOTION"
    PARTNER = "PARTNER"
    ADJUSTMENT = "ADJUSTMENT"
    REDEMPTION = "REDEMPTION"
    REVERSAL = "REVERSAL"
    EXPIRATION = "EXPIRATION"
    ACTIVITY = "ACTIVITY"  # an admin-defined activity type paid (models.targeting.ActivityType)


# Kinds whose points count as *earned* (tiers, leaderboards); REVERSAL entries count against them.
EARNING_KINDS = frozenset(
    {
        EntryKind.PURCHASE,
        EntryKind.SIGNUP,
        EntryKind.REFERRAL,
        EntryKind.REVIEW,
        EntryKind.SOCIAL_SHARE,
        EntryKind.BIRTHDAY,
        EntryKind.ANNIVERSARY,
        EntryKind.CHALLENGE,
        EntryKind.PROMOTION,
        EntryKind.PARTNER,
        EntryKind.ACTIVITY,
    }
)
QUALIFYING_KINDS = EARNING_KINDS | {EntryKind.REVERSAL}


class EntryStatus(enum.StrEnum):
    PENDING = "PENDING"
    POSTED = "POSTED"
    VOIDED = "VOIDED"


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_member_id_id", "member_id", "id"),
        Index("ix_ledger_entries_member_created", "member_id", "created_at"),
        # Lots a debit can draw from, and lots the sweeps look at: only lots with points left
        # (spent ones would make every draw scan a member's whole history).
        Index(
            "ix_ledger_entries_open_lots",
            "member_id",
            "status",
            "expires_at",
            postgresql_where=text("remaining > 0"),
            sqlite_where=text("remaining > 0"),
        ),
        Index("ix_ledger_entries_available_at", "status", "available_at"),
        # Lots by when they expire, for the expiring-points reminders (services.ledger.reminders).
        Index(
            "ix_ledger_entries_expiring",
            "expires_at",
            postgresql_where=text("remaining > 0 AND expires_at IS NOT NULL"),
            sqlite_where=text("remaining > 0 AND expires_at IS NOT NULL"),
        ),
        # Program figures and charts over a window: on PostgreSQL the columns they sum ride
        # in the index, so a window is read from it alone (entries are stored member by
        # member, not in time order: a month read through the heap touched most of its pages).
        Index(
            "ix_ledger_entries_created_at",
            "created_at",
            postgresql_include=["kind", "status", "points", "member_id"],
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[EntryKind] = mapped_column(Enum(EntryKind, native_enum=False, length=20))
    status: Mapped[EntryStatus] = mapped_column(Enum(EntryStatus, native_enum=False, length=10))
    points: Mapped[int] = mapped_column(Integer)
    remaining: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str] = mapped_column(String(500))
    reference: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    available_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The lot a reversal draws from first (the purchase it reverses).
    reverses_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_entries.id"), index=True
    )
    breakdown: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Who caused it (an API key id, "member:<id>", "system"): the audit trail of adjustments.
    actor: Mapped[str] = mapped_column(String(100), default="system")
    # The admin-defined activity type an ACTIVITY entry paid (built-ins are named by the kind).
    activity_type_id: Mapped[int | None] = mapped_column(ForeignKey("activity_types.id"))


class Purchase(Base):
    """One recorded order: the idempotency record of `recordPurchase` and the base of refunds."""

    __tablename__ = "purchases"
    __table_args__ = (
        # Purchases in a window (segments): read from an index alone on PostgreSQL, in member
        # order for a long window (a merge with `members`, no hash), in time order for a short
        # one. The first also serves the member's foreign key.
        Index(
            "ix_purchases_member_occurred",
            "member_id",
            "occurred_at",
            postgresql_include=["net_cents"],
        ),
        Index(
            "ix_purchases_occurred_at",
            "occurred_at",
            postgresql_include=["member_id", "net_cents"],
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[str] = mapped_column(String(200), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), index=True)
    points_earned: Mapped[int] = mapped_column(Integer)
    refunded_amount: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal(0))
    # What the purchase still counts for (amount less refunds) in cents, kept by the database:
    # segments sum it as integers (migration 0021).
    net_cents: Mapped[int] = mapped_column(BigInteger, Computed(NET_CENTS))
    # What refunds have targeted so far (recovered or not): never exceeds points_earned.
    points_reversed: Mapped[int] = mapped_column(Integer, default=0)
    # A purchase in another currency (`amount` is then converted to the program's at
    # `currency_rate`); null: the program's own.
    currency: Mapped[str | None] = mapped_column(String(3))
    currency_rate: Mapped[Decimal | None] = mapped_column(Numeric(18, 8))
    # An order with lines: what each line earned, so line refunds reverse exactly that
    # (services.ledger.lines.EarnedLines); null: an order without lines.
    lines: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Refund(Base):
    """One refund of a purchase, idempotent by the merchant's `refundId`."""

    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(200), unique=True)
    purchase_id: Mapped[int] = mapped_column(ForeignKey("purchases.id"), index=True)
    requested_amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class IdempotencyRecord(Base):
    """A caller-scoped idempotency key and a fingerprint of the input it was first used with."""

    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    scope: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))
    # The first use's entry, where no other row records it (purchases keep it on `purchases`).
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
