"""Challenges, badges and the celebrations paid by the daily sweep."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, UtcDateTime


class ChallengeMetric(enum.StrEnum):
    PURCHASE_COUNT = "PURCHASE_COUNT"
    PURCHASE_AMOUNT = "PURCHASE_AMOUNT"
    REVIEW_COUNT = "REVIEW_COUNT"
    REFERRAL_COUNT = "REFERRAL_COUNT"
    SOCIAL_SHARE_COUNT = "SOCIAL_SHARE_COUNT"
    POINTS_EARNED = "POINTS_EARNED"


class Recurrence(enum.StrEnum):
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"


class Badge(Base):
    __tablename__ = "badges"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(String(1000), default="")
    image_url: Mapped[str | None] = mapped_column(String(500))
    # Awarded automatically when a member's lifetime count of `metric` reaches `threshold`.
    metric: Mapped[ChallengeMetric | None] = mapped_column(
        Enum(ChallengeMetric, native_enum=False, length=30)
    )
    threshold: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class MemberBadge(Base):
    """A badge a member holds: each badge is awarded once (the unique constraint says so)."""

    __tablename__ = "member_badges"
    __table_args__ = (UniqueConstraint("member_id", "badge_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    badge_id: Mapped[int] = mapped_column(ForeignKey("badges.id"))
    awarded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Challenge(Base):
    __tablename__ = "challenges"
    __table_args__ = (Index("ix_challenges_window", "starts_at", "ends_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(1000), default="")
    metric: Mapped[ChallengeMetric] = mapped_column(
        Enum(ChallengeMetric, native_enum=False, length=30)
    )
    goal: Mapped[int] = mapped_column(Integer)
    reward_points: Mapped[int] = mapped_column(Integer)
    badge_id: Mapped[int | None] = mapped_column(ForeignKey("badges.id"))
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Recurring challenges start again each week or month (progress counts per period).
    recurrence: Mapped[Recurrence | None] = mapped_column(
        Enum(Recurrence, native_enum=False, length=10)
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Only the segment's members see it and make progress on it (services.targeting).
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id"))


class ChallengeCompletion(Base):
    """A member completed a challenge (in one period, for recurring ones): paid exactly once."""

    __tablename__ = "challenge_completions"
    __table_args__ = (UniqueConstraint("member_id", "challenge_id", "period_start"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    challenge_id: Mapped[int] = mapped_column(ForeignKey("challenges.id"))
    period_start: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
