"""The loyalty program's settings (one row), its tiers and its promotions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    text,
)
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
    # points.expiring webhooks go out this many days before a lot expires (null: none).
    expiry_reminder_days: Mapped[int | None] = mapped_column(Integer)
    # Bumped by every change of settings, tiers or promotions: processes that cache the catalog
    # compare it before they earn, so no purchase is priced with a stale one.
    catalog_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What a member enrolling with a referral code gets (0 / null: none). No foreign key to
    # rewards: adding one would rebuild this table on SQLite, and rewards are never deleted
    # (updateProgram checks the reward exists).
    referral_welcome_points: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    referral_welcome_reward_id: Mapped[int | None] = mapped_column(BigId)


_LIVE_TIER = "deleted_at IS NULL"


class Tier(Base):
    """A tier. Deleting one retires it (`deleted_at`): members' history and events still name
    it, and a new tier may take its name or threshold."""

    __tablename__ = "tiers"
    __table_args__ = (
        Index(
            "uq_tiers_live_name",
            "name",
            unique=True,
            postgresql_where=text(_LIVE_TIER),
            sqlite_where=text(_LIVE_TIER),
        ),
        Index(
            "uq_tiers_live_threshold",
            "threshold",
            unique=True,
            postgresql_where=text(_LIVE_TIER),
            sqlite_where=text(_LIVE_TIER),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    threshold: Mapped[int] = mapped_column(Integer)
    multiplier: Mapped[Decimal] = mapped_column(Numeric(8, 4))
    benefits: Mapped[list[str]] = mapped_column(JSON, default=list)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Promotion(Base):
    __tablename__ = "promotions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    multiplier: Mapped[Decimal] = mapped_column(Numeric(8, 4))
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Run as an experiment: this share of eligible members is held out as CONTROL (see
    # services.experiments). Null: no experiment, everyone eligible is treated.
    experiment_control_share: Mapped[float | None] = mapped_column(Float)
    # Only the segment's members earn it and see it (services.targeting).
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id"))
