"""Badges and challenges as clients see them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from sqlalchemy import select

import models
from schema.context import Info
from schema.ids import encode_id
from schema.types.node import Node
from services.gamification import challenges as challenge_service
from services.gamification.challenges import Progress

if TYPE_CHECKING:
    from schema.types.segments import Segment

strawberry.enum(models.ChallengeMetric, name="ChallengeMetric")
strawberry.enum(models.Recurrence, name="ChallengeRecurrence")


@strawberry.type
class Badge(Node):
    id: strawberry.ID
    name: str
    description: str
    image_url: str | None
    metric: models.ChallengeMetric | None = strawberry.field(
        description="With threshold: awarded when a member's lifetime count reaches it"
    )
    threshold: int | None

    @classmethod
    def from_row(cls, row: models.Badge) -> Badge:
        return cls(
            id=strawberry.ID(encode_id("Badge", row.id)),
            name=row.name,
            description=row.description,
            image_url=row.image_url,
            metric=row.metric,
            threshold=row.threshold,
        )


@strawberry.type
class MemberBadge:
    badge: Badge
    awarded_at: datetime


@strawberry.type
class Challenge(Node):
    id: strawberry.ID
    name: str
    description: str
    metric: models.ChallengeMetric
    goal: int
    reward_points: int
    starts_at: datetime
    ends_at: datetime | None
    recurrence: models.Recurrence | None = strawberry.field(
        description="Recurring challenges start again each week or month"
    )
    badge_pk: strawberry.Private[int | None]
    segment_pk: strawberry.Private[int | None] = None

    @classmethod
    def from_row(cls, row: models.Challenge) -> Challenge:
        return cls(
            id=strawberry.ID(encode_id("Challenge", row.id)),
            name=row.name,
            description=row.description,
            metric=row.metric,
            goal=row.goal,
            reward_points=row.reward_points,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            recurrence=row.recurrence,
            badge_pk=row.badge_id,
            segment_pk=row.segment_id,
        )

    @strawberry.field  # null when untargeted
    async def segment(
        self, info: Info
    ) -> Annotated[Segment, strawberry.lazy("schema.types.segments")] | None:
        from schema.types.segments import segment_by_pk

        return await segment_by_pk(info, self.segment_pk)

    @strawberry.field  # awarded on completion, if set
    async def badge(self, info: Info) -> Badge | None:
        if self.badge_pk is None:
            return None
        row = await info.context.loaders.badges.load(self.badge_pk)
        return Badge.from_row(row) if row is not None else None


@strawberry.type
class ChallengeProgress:
    challenge: Challenge
    progress: int = strawberry.field(description="Capped at the goal")
    completed_at: datetime | None

    @classmethod
    def from_progress(cls, state: Progress) -> ChallengeProgress:
        return cls(
            challenge=Challenge.from_row(state.challenge),
            progress=state.progress,
            completed_at=state.completed_at,
        )


@strawberry.type
class BadgeAwarded:
    badge: Badge
    awarded_at: datetime


@strawberry.type
class ChallengeCompleted:
    challenge: Challenge
    completed_at: datetime


async def badges_of(info: Info, member_id: int) -> list[MemberBadge]:
    async with info.context.runtime.read_sessions() as session:
        rows = await session.execute(
            select(models.MemberBadge.awarded_at, models.Badge)
            .join(models.Badge, models.Badge.id == models.MemberBadge.badge_id)
            .where(models.MemberBadge.member_id == member_id)
            .order_by(models.MemberBadge.awarded_at, models.MemberBadge.id)
        )
        return [MemberBadge(badge=Badge.from_row(b), awarded_at=at) for at, b in rows]


async def challenges_of(info: Info, member_id: int) -> list[ChallengeProgress]:
    """Running challenges with the member's progress in their current period, then the ones
    it completed recently that have ended since."""
    now = info.context.runtime.clock.now()
    async with info.context.runtime.read_sessions() as session:
        running = await challenge_service.running_for(session, member_id, now)
        states = await challenge_service.progress(session, member_id, running, now)
        ended = await challenge_service.recently_completed(
            session, member_id, now, exclude=[c.id for c in running]
        )
    return [ChallengeProgress.from_progress(state) for state in [*states, *ended]]
