"""Targeting: segments, named sets of members defined by a rule over the ledger and the
member rows (services.segments compiles the rule to SQL)."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, Enum, ForeignKey, Integer, Numeric, String
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


class EarningRuleKind(enum.StrEnum):
    CATEGORY_MULTIPLIER = "CATEGORY_MULTIPLIER"
    SKU_POINTS_PER_UNIT = "SKU_POINTS_PER_UNIT"
    EXCLUDE = "EXCLUDE"
    FIRST_PURCHASE_BONUS = "FIRST_PURCHASE_BONUS"
    MINIMUM_ORDER_BONUS = "MINIMUM_ORDER_BONUS"


class EarningRule(Base):
    """An admin rule on how purchases earn (services.earning_rules): line multipliers, fixed
    points per unit, exclusions, and order bonuses."""

    __tablename__ = "earning_rules"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[EarningRuleKind] = mapped_column(
        Enum(EarningRuleKind, native_enum=False, length=30)
    )
    # Which lines it applies to (line kinds): {"category", "sku", "shipping", "giftCard",
    # "discounted", "tax"}, only the fields given.
    match: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    multiplier: Mapped[Decimal | None] = mapped_column(Numeric(8, 4))
    points: Mapped[int | None] = mapped_column(Integer)
    minimum_amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segments.id"), index=True)
    starts_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CurrencyRate(Base):
    """Program-currency units per one unit of another currency (ISO 4217 code)."""

    __tablename__ = "currency_rates"

    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    rate: Mapped[Decimal] = mapped_column(Numeric(18, 8))
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
