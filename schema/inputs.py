"""Mutation inputs: one `input` argument per mutation."""

from __future__ import annotations

from datetime import date, datetime

import strawberry

from schema.types.ledger import ActivityKind


@strawberry.input
class EnrollInput:
    email: str
    display_name: str
    external_id: str | None = None
    birthday: date | None = None
    referral_code: str | None = None


@strawberry.input
class RecordPurchaseInput:
    order_id: str
    amount: float
    member_id: strawberry.ID | None = None
    external_id: str | None = None
    occurred_at: datetime | None = None


@strawberry.input
class RefundPurchaseInput:
    order_id: str
    refund_id: str
    amount: float | None = None


@strawberry.input
class RecordActivityInput:
    kind: ActivityKind
    reference: str
    member_id: strawberry.ID | None = None
    external_id: str | None = None


@strawberry.input
class AdjustPointsInput:
    member_id: strawberry.ID
    points: int
    reason: str
    idempotency_key: str


@strawberry.input(
    description="Only the fields given change; an explicit null clears expiryDays / tierWindowDays"
)
class UpdateProgramInput:
    name: str | None = strawberry.UNSET
    currency: str | None = strawberry.UNSET
    points_per_currency_unit: float | None = strawberry.UNSET
    point_value: float | None = strawberry.UNSET
    pending_days: int | None = strawberry.UNSET
    expiry_days: int | None = strawberry.UNSET
    signup_bonus: int | None = strawberry.UNSET
    referral_bonus: int | None = strawberry.UNSET
    review_points: int | None = strawberry.UNSET
    social_share_points: int | None = strawberry.UNSET
    birthday_points: int | None = strawberry.UNSET
    tier_window_days: int | None = strawberry.UNSET
    daily_activity_cap: int | None = strawberry.UNSET


@strawberry.input
class CreateTierInput:
    name: str
    threshold: int
    multiplier: float = 1.0
    benefits: list[str] = strawberry.field(default_factory=list)


@strawberry.input
class CreatePromotionInput:
    name: str
    multiplier: float
    starts_at: datetime
    ends_at: datetime
