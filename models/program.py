"""The loyalty program's settings (one row), its tiers and its promotions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, CheckConstraint, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, UtcDateTime

PROGRAM_ID = 1


class Program(Base):
    __tablename__ = "program"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=PROGRAM_ID)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    points_per_currency_unit: Mapped[Decimal] = mapped_column(Numeric(12, 4))
    point_value: Mapped[Decimal] = mapped_column(Numeric(12, 6))
    pending_days: Mapped[int] = mapped_column(Integer)
    expiry_days: Mapped[int | None] = mapped_column(Integer)
    signup_bonus: Mapped[int] = mapped_column(Integer)
    referral_bonus: Mapped[int] = mapped_column(Integer)
    review_points: Mapped[int] = mapped_column(Integer)
    social_share_points: Mapped[int] = mapped_column(Integer)
    birthday_points: Mapped[int] = mapped_column(Integer)
    # Paid on each anniversary of a member's enrolment (0: none).
    anniversary_points: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    tier_window_days: Mapped[int | None] = mapped_column(Integer)
    daily_activity_cap: Mapped[int] = mapped_column(Integer, default=10)
    # Bumped by every change of settings, tiers or promotions: processes that cache the catalog
    # compare it before they earn, so no purchase is priced with a stale one.
    catalog_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Tier(Base):
    __tablename__ = "tiers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    threshold: Mapped[int] = mapped_column(Integer, unique=True)
    multiplier: Mapped[Decimal] = mapped_column(Numeric(8, 4))
    benefits: Mapped[list[str]] = mapped_column(JSON, default=list)


class Promotion(Base):
    __tablename__ = "promotions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    multiplier: Mapped[Decimal] = mapped_column(Numeric(8, 4))
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime)
