"""Activity types (what earns points beyond purchases) and their caps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry

import models
from schema.context import Info
from schema.ids import encode_id
from schema.types.node import Node
from services.activity_types import BUILT_INS

if TYPE_CHECKING:
    from schema.types.segments import Segment


@strawberry.type(
    description="Awards per member per UTC calendar day, ISO week, calendar month and ever; "
    "null: no cap"
)
class ActivityCaps:
    per_day: int | None
    per_week: int | None
    per_month: int | None
    lifetime: int | None


@strawberry.type(
    description="An activity that earns points. Built-in types `review` and `social_share` "
    "stand for ActivityKind REVIEW and SOCIAL_SHARE (points follow Program.reviewPoints / "
    "socialSharePoints, their daily cap Program.dailyActivityCap)"
)
class ActivityType(Node):
    id: strawberry.ID
    key: str
    name: str
    points: int
    caps: ActivityCaps
    tier_multiplier_applies: bool
    built_in: bool
    active: bool
    row: strawberry.Private[models.ActivityType]

    @classmethod
    def from_row(cls, row: models.ActivityType, program: models.Program) -> ActivityType:
        if row.built_in:
            # One home for a built-in's points and cap: the program's settings.
            kind = BUILT_INS[row.key][1]
            is_review = kind is models.EntryKind.REVIEW
            points = program.review_points if is_review else program.social_share_points
            caps = ActivityCaps(
                per_day=program.daily_activity_cap, per_week=None, per_month=None, lifetime=None
            )
        else:
            points = row.points
            caps = ActivityCaps(
                per_day=row.per_day,
                per_week=row.per_week,
                per_month=row.per_month,
                lifetime=row.lifetime,
            )
        return cls(
            id=strawberry.ID(encode_id("ActivityType", row.id)),
            key=row.key,
            name=row.name,
            points=points,
            caps=caps,
            tier_multiplier_applies=row.tier_multiplier_applies,
            built_in=row.built_in,
            active=row.active,
            row=row,
        )

    @strawberry.field  # only its members earn it; others get NOT_ELIGIBLE
    async def segment(
        self, info: Info
    ) -> Annotated[Segment, strawberry.lazy("schema.types.segments")] | None:
        from schema.types.segments import Segment

        # Segments are for admins and services: a member reading its own transactions does
        # not reach a segment (its rule and its members) through the type it was paid.
        if self.row.segment_id is None or not info.context.viewer.is_staff:
            return None
        found = await info.context.loaders.segments.load(self.row.segment_id)
        return Segment.from_row(found) if found is not None else None
