"""The program's settings, tiers and promotions as clients see them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

import models
from schema.context import Info
from schema.ids import encode_id
from schema.types.node import Node

if TYPE_CHECKING:
    from schema.types.segments import Segment


@strawberry.type
class Program:
    name: str
    currency: str
    points_per_currency_unit: float
    point_value: float
    pending_days: int
    expiry_days: int | None
    signup_bonus: int
    referral_bonus: int
    review_points: int
    social_share_points: int
    birthday_points: int
    anniversary_points: int = strawberry.field(
        description="Paid on each anniversary of a member's enrolment (0: none)"
    )
    tier_window_days: int | None
    daily_activity_cap: int = strawberry.field(
        description="Reviews or social shares rewarded per member per day, for each kind"
    )
    expiry_reminder_days: int | None = strawberry.field(
        description="points.expiring webhooks go out this many days before a lot expires"
    )

    @classmethod
    def from_row(cls, row: models.Program) -> Program:
        return cls(
            name=row.name,
            currency=row.currency,
            points_per_currency_unit=float(row.points_per_currency_unit),
            point_value=float(row.point_value),
            pending_days=row.pending_days,
            expiry_days=row.expiry_days,
            signup_bonus=row.signup_bonus,
            referral_bonus=row.referral_bonus,
            review_points=row.review_points,
            social_share_points=row.social_share_points,
            birthday_points=row.birthday_points,
            anniversary_points=row.anniversary_points,
            tier_window_days=row.tier_window_days,
            daily_activity_cap=row.daily_activity_cap,
            expiry_reminder_days=row.expiry_reminder_days,
        )


@strawberry.type
class Tier(Node):
    id: strawberry.ID
    name: str
    rank: int
    threshold: int
    multiplier: float
    benefits: list[str]

    @classmethod
    def from_row(cls, row: models.Tier, rank: int) -> Tier:
        return cls(
            id=strawberry.ID(encode_id("Tier", row.id)),
            name=row.name,
            rank=rank,
            threshold=row.threshold,
            multiplier=float(row.multiplier),
            benefits=list(row.benefits),
        )

    @classmethod
    def among(cls, rows: list[models.Tier], tier_id: int) -> Tier:
        """Tier `tier_id` of `rows` (by threshold, as `Loaders.tiers` gives them), ranked."""
        rank = next(i for i, row in enumerate(rows) if row.id == tier_id)
        return cls.from_row(rows[rank], rank)

    @classmethod
    def ranked(cls, rows: list[models.Tier]) -> list[Tier]:
        """All tiers with their ranks: 0 for the entry tier, rising with thresholds."""
        return [cls.from_row(row, rank) for rank, row in enumerate(rows)]


@strawberry.type
class TierProgress:
    current: Tier
    next: Tier | None
    qualifying_points: int
    points_to_next: int | None


@strawberry.type
class Promotion(Node):
    id: strawberry.ID
    name: str
    multiplier: float
    starts_at: datetime
    ends_at: datetime
    segment_pk: strawberry.Private[int | None] = None

    @classmethod
    def from_row(cls, row: models.Promotion) -> Promotion:
        return cls(
            id=strawberry.ID(encode_id("Promotion", row.id)),
            name=row.name,
            multiplier=float(row.multiplier),
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            segment_pk=row.segment_id,
        )

    @strawberry.field  # null when untargeted
    async def segment(
        self, info: Info
    ) -> Annotated[Segment, strawberry.lazy("schema.types.segments")] | None:
        from schema.types.segments import segment_by_pk

        return await segment_by_pk(info, self.segment_pk)
