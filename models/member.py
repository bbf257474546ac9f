"""Members, with their cached balances (always equal to the sums of their ledger entries)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, UtcDateTime


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (Index("ix_members_earned_points", "earned_points"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    birthday: Mapped[date | None] = mapped_column(Date)
    joined_at: Mapped[datetime] = mapped_column(UtcDateTime)
    referral_code: Mapped[str] = mapped_column(String(16), unique=True)
    referred_by_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), index=True)
    referral_rewarded: Mapped[bool] = mapped_column(default=False)
    # When its first purchase paid the referral: the moment it counts for its referrer.
    referral_rewarded_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    tier_id: Mapped[int] = mapped_column(ForeignKey("tiers.id"))

    # Caches of ledger sums, updated in the same transaction as every entry.
    available: Mapped[int] = mapped_column(Integer, default=0)
    pending: Mapped[int] = mapped_column(Integer, default=0)
    lifetime_earned: Mapped[int] = mapped_column(Integer, default=0)
    redeemed: Mapped[int] = mapped_column(Integer, default=0)
    expired: Mapped[int] = mapped_column(Integer, default=0)
    qualifying_points: Mapped[int] = mapped_column(Integer, default=0)
    # Points earned ever (earning kinds less reversals): the all-time leaderboard's score, so
    # that board can be read from an index when Redis is not there.
    earned_points: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Earliest moment a pending lot activates or a lot expires: settling is skipped before it.
    next_settlement_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
