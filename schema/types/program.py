"""The program's settings, tiers and promotions as clients see them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

import models
from schema.context import Info, Role
from schema.ids import encode_id
from schema.types.node import Node

if TYPE_CHECKING:
    from schema.types.experiments import Experiment
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
    referral_welcome_points: int = strawberry.field(
        description="To a member enrolling with a referral code, as a REFERRAL entry (0: none)"
    )
    referral_welcome_reward_id: strawberry.ID | None = strawberry.field(
        description="Issued at 0 points to a member enrolling with a referral code (null: none)"
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
            referral_welcome_points=row.referral_welcome_points,
            referral_welcome_reward_id=strawberry.ID(
                encode_id("Reward", row.referral_welcome_reward_id)
            )
            if row.referral_welcome_reward_id is not None
            else None,
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
    control_share: strawberry.Private[float | None] = None
    segment_pk: strawberry.Private[int | None] = None

    @classmethod
    def from_row(cls, row: models.Promotion) -> Promotion:
        return cls(
            id=strawberry.ID(encode_id("Promotion", row.id)),
            name=row.name,
            multiplier=float(row.multiplier),
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            control_share=row.experiment_control_share,
            segment_pk=row.segment_id,
        )

    @strawberry.field  # admin only: null for any other caller
    def experiment(
        self, info: Info
    ) -> Annotated[Experiment, strawberry.lazy("schema.types.experiments")] | None:
        if self.control_share is None or info.context.viewer.role is not Role.ADMIN:
            return None
        from schema.types.experiments import Experiment

        return Experiment(control_share=self.control_share)

    @strawberry.field  # null when untargeted
    async def segment(
        self, info: Info
    ) -> Annotated[Segment, strawberry.lazy("schema.types.segments")] | None:
        from schema.types.segments import segment_by_pk

        return await segment_by_pk(info, self.segment_pk)
