"""The rewards catalog, partner brands that fund co-branded rewards, and redemptions."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Enum, ForeignKey, Index, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, BigId, UtcDateTime
from models.ledger import LedgerEntry


class RewardKind(enum.StrEnum):
    DISCOUNT_AMOUNT = "DISCOUNT_AMOUNT"
    DISCOUNT_PERCENT = "DISCOUNT_PERCENT"
    FREE_PRODUCT = "FREE_PRODUCT"
    FREE_SHIPPING = "FREE_SHIPPING"
    EXPERIENCE = "EXPERIENCE"
    DONATION = "DONATION"


class RedemptionStatus(enum.StrEnum):
    ISSUED = "ISSUED"
    USED = "USED"
    CANCELLED = "CANCELLED"


class Partner(Base):
    """A partner brand: it funds co-branded rewards and is settled with for their redemptions."""

    __tablename__ = "partners"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Deactivated: its keys are refused, its rewards leave the catalog, its settlements stay.
    deactivated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Reward(Base):
    __tablename__ = "rewards"
    # The database refuses a negative stock whatever the code does.
    __table_args__ = (CheckConstraint("stock IS NULL OR stock >= 0", name="stock_not_negative"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")
    kind: Mapped[RewardKind] = mapped_column(Enum(RewardKind, native_enum=False, length=20))
    cost: Mapped[int] = mapped_column(Integer)
    # Money value (or percent, for DISCOUNT_PERCENT) of one redemption.
    value: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"), index=True)
    minimum_tier_id: Mapped[int | None] = mapped_column(ForeignKey("tiers.id"))
    stock: Mapped[int | None] = mapped_column(Integer)  # null: unlimited
    starts_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    per_member_limit: Mapped[int | None] = mapped_column(Integer)  # null: no limit
    # Co-branded rewards: what one redemption settles with the partner.
    settlement_amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Only the segment's members see and redeem it (services.targeting).
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id"))
    # VIP early access: from early_access_starts_at until starts_at, members at or above the
    # tier (by threshold) or in the segment may redeem it, nobody else.
    early_access_starts_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    early_access_tier_id: Mapped[int | None] = mapped_column(ForeignKey("tiers.id"))
    early_access_segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id"))


class Redemption(Base):
    """One redemption: the voucher (or the donation receipt) and what it cost.

    Terms (points, value, settlement amount) are copied from the reward when it is redeemed, so
    later catalog edits never change a voucher already issued or a partner's settlement.
    """

    __tablename__ = "redemptions"
    __table_args__ = (
        Index("ix_redemptions_member_id_id", "member_id", "id"),
        Index("ix_redemptions_member_reward", "member_id", "reward_id"),
        Index("ix_redemptions_partner_created", "partner_id", "created_at"),
        Index("ix_redemptions_reward_status", "reward_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"))
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("partners.id"))
    # The REDEMPTION entry that paid for it.
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), unique=True)
    points: Mapped[int] = mapped_column(Integer)
    value: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    settlement_amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    status: Mapped[RedemptionStatus] = mapped_column(
        Enum(RedemptionStatus, native_enum=False, length=10)
    )
    code: Mapped[str | None] = mapped_column(String(32), unique=True)  # none for donations
    receipt_number: Mapped[str] = mapped_column(String(32), unique=True)
    # Whether a unit of stock was taken (and so is given back on cancellation).
    took_stock: Mapped[bool] = mapped_column(default=False)
    # The lots the points came from, as [[expires_at ISO or null, points], ...]: a cancellation
    # gives the points back with the expiries they had, so cancelling never extends them.
    drawn: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(100), default="system")

    # Set with the entry object before it has an id: one flush writes both, entry first.
    entry: Mapped[LedgerEntry] = relationship(lazy="raise")
