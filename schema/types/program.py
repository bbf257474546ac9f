"""The program's settings, tiers and promotions as clients see them."""

from __future__ import annotations

from collections.abc import Sequence
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
    from services.catalog import Catalog


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
    pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: models.Tier, rank: int) -> Tier:
        return cls(
            id=strawberry.ID(encode_id("Tier", row.id)),
            name=row.name,
            rank=rank,
            threshold=row.threshold,
            multiplier=float(row.multiplier),
            benefits=list(row.benefits),
            pk=row.id,
        )

    @classmethod
    def ranked(cls, rows: Sequence[models.Tier]) -> tuple[Tier, ...]:
        """All tiers with their ranks: 0 for the entry tier, rising with thresholds."""
        return tuple(cls.from_row(row, rank) for rank, row in enumerate(rows))

    @classmethod
    def ranked_in(cls, catalog: Catalog, including: int | None = None) -> tuple[Tier, ...]:
        """The catalog's live tiers (with tier `including` among them if it is retired),
        ranked: built once per catalog snapshot and shared (never mutated), since every
        dashboard names its member's tier and the next one."""
        return _SNAPSHOT_TIERS.ranked(catalog, including)

    @classmethod
    def of(cls, catalog: Catalog, tier_id: int) -> Tier:
        """Tier `tier_id`, live or retired, ranked among the live ones."""
        return next(t for t in cls.ranked_in(catalog, tier_id) if t.pk == tier_id)


class _SnapshotTiers:
    """`Tier.ranked_in` of the last catalog snapshot asked for (a snapshot lives a few
    seconds; when another one is asked for, this one's tiers are dropped)."""

    def __init__(self) -> None:
        self._catalog: Catalog | None = None
        self._ranked: dict[int | None, tuple[Tier, ...]] = {}

    def ranked(self, catalog: Catalog, including: int | None) -> tuple[Tier, ...]:
        if catalog is not self._catalog:
            self._catalog, self._ranked = catalog, {}
        key = including if including is not None and catalog.is_retired(including) else None
        ranked = self._ranked.get(key)
        if ranked is None:
            ranked = self._ranked[key] = Tier.ranked(catalog.tiers_including(key))
        return ranked


_SNAPSHOT_TIERS = _SnapshotTiers()


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
