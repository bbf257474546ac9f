"""Targeting: segments, named sets of members defined by a rule over the ledger and the
member rows (services.segments compiles the rule to SQL)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigId, UtcDateTime


class Segment(Base):
    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # {"all": [condition, ...], "any": [...]}: conditions as services.segments.rules keeps
    # them (primary keys, not global IDs).
    rule: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ActivityType(Base):
    """An activity that earns points (services.activity_types). The built-ins `review` and
    `social_share` are rows too (so entries, IDs and segments name them like any other), but
    their points and cap follow the program's settings, not these columns."""

    __tablename__ = "activity_types"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    points: Mapped[int] = mapped_column(Integer)
    # Awards per member per UTC day, ISO week, calendar month and ever (null: no cap).
    per_day: Mapped[int | None] = mapped_column(Integer)
    per_week: Mapped[int | None] = mapped_column(Integer)
    per_month: Mapped[int | None] = mapped_column(Integer)
    lifetime: Mapped[int | None] = mapped_column(Integer)
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id"), index=True)
    tier_multiplier_applies: Mapped[bool] = mapped_column(Boolean, default=False)
    built_in: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
