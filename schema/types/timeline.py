"""The program's figures per bucket of time, for admins: what the admin page charts.

Each list field is one statement (`services.timeline`), run only when asked for; sibling
fields resolve concurrently, each on its own read session.
"""

from __future__ import annotations

from datetime import datetime

import strawberry

import models
from schema.context import Info
from schema.exceptions import BadUserInput
from schema.types.program import Tier
from schema.types.reward import Reward
from services import timeline
from services.errors import DomainError
from services.timeline import Bucket, Interval

strawberry.enum(Interval, name="TimelineInterval")


@strawberry.type(description="Points issued, redeemed and expired in a bucket, as programStats")
class PointsBucket:
    start: datetime
    end: datetime = strawberry.field(description="Exclusive")
    issued: int
    redeemed: int
    expired: int
    outstanding: int = strawberry.field(description="available + pending at the bucket's end")
    liability: float = strawberry.field(
        description="outstanding x the program's pointValue (today's)"
    )


@strawberry.type
class MembersBucket:
    start: datetime
    end: datetime = strawberry.field(description="Exclusive")
    active: int = strawberry.field(description="Earned or redeemed inside the bucket")
    joined: int = strawberry.field(description="Enrolled inside the bucket")
    enrolled: int = strawberry.field(description="Enrolled by the bucket's end")


@strawberry.type
class RewardKindRedemptions:
    kind: models.RewardKind
    redemptions: int
    points: int


@strawberry.type
class RedemptionsBucket:
    start: datetime
    end: datetime = strawberry.field(description="Exclusive")
    redemptions: int
    points: int
    by_kind: list[RewardKindRedemptions] = strawberry.field(
        description="Kinds with at least one redemption"
    )


@strawberry.type
class TierMembers:
    tier: Tier
    members: int


@strawberry.type
class RewardRedemptions:
    reward: Reward
    redemptions: int
    points: int


# Each resolver below is one statement of services.timeline, on its own read session.


async def _points(root: ProgramTimeline, info: Info) -> list[PointsBucket]:
    async with info.context.runtime.read_sessions() as session:
        figures = await timeline.points(session, root.cut)
    return [
        PointsBucket(
            start=f.bucket.start,
            end=f.bucket.end,
            issued=f.issued,
            redeemed=f.redeemed,
            expired=f.expired,
            outstanding=f.outstanding,
            liability=float(f.liability),
        )
        for f in figures
    ]


async def _members(root: ProgramTimeline, info: Info) -> list[MembersBucket]:
    async with info.context.runtime.read_sessions() as session:
        figures = await timeline.members(session, root.cut, root.interval)
    return [
        MembersBucket(
            start=f.bucket.start,
            end=f.bucket.end,
            active=f.active,
            joined=f.joined,
            enrolled=f.enrolled,
        )
        for f in figures
    ]


async def _redemptions(root: ProgramTimeline, info: Info) -> list[RedemptionsBucket]:
    async with info.context.runtime.read_sessions() as session:
        figures = await timeline.redemptions(session, root.cut)
    return [
        RedemptionsBucket(
            start=f.bucket.start,
            end=f.bucket.end,
            redemptions=sum(k.redemptions for k in f.by_kind),
            points=sum(k.points for k in f.by_kind),
            by_kind=[
                RewardKindRedemptions(kind=k.kind, redemptions=k.redemptions, points=k.points)
                for k in f.by_kind
            ],
        )
        for f in figures
    ]


async def _members_by_tier(info: Info) -> list[TierMembers]:
    async with info.context.runtime.read_sessions() as session:
        counts = {c.tier_id: c.members for c in await timeline.members_by_tier(session)}
    loaders = info.context.loaders
    by_tier = [
        TierMembers(tier=tier, members=counts.pop(tier.pk, 0))
        for tier in Tier.ranked_in(await loaders.catalog())  # live tiers, by threshold
    ]
    # Members a deleted tier still holds (they move at their next write or sweep).
    for tier_id, n in sorted(counts.items()):
        retired = Tier.of(await loaders.catalog(tier_id=tier_id), tier_id)
        by_tier.append(TierMembers(tier=retired, members=n))
    return by_tier


async def _top_rewards(
    root: ProgramTimeline, info: Info, first: int = 5
) -> list[RewardRedemptions]:
    try:
        async with info.context.runtime.read_sessions() as session:
            counts = await timeline.top_rewards(session, start=root.from_, end=root.to, first=first)
    except DomainError as error:
        raise BadUserInput(error.message) from error
    now = info.context.runtime.clock.now()
    loader = info.context.loaders.rewards.reward
    rows = await loader.load_many([c.reward_id for c in counts])
    return [
        RewardRedemptions(
            reward=Reward.from_row(row, now), redemptions=c.redemptions, points=c.points
        )
        for c, row in zip(counts, rows, strict=True)
        if row is not None
    ]


@strawberry.type(
    description="The program's figures per UTC day, ISO week (from Monday) or calendar month "
    "of [from, to); the first and last buckets are cut at from and to"
)
class ProgramTimeline:
    from_: datetime = strawberry.field(name="from")
    to: datetime
    interval: Interval
    cut: strawberry.Private[list[Bucket]]
    points: list[PointsBucket] = strawberry.field(resolver=_points, description="One per bucket")
    members: list[MembersBucket] = strawberry.field(resolver=_members, description="One per bucket")
    redemptions: list[RedemptionsBucket] = strawberry.field(
        resolver=_redemptions,
        description="One per bucket: redemptions made in it and not cancelled since, by kind",
    )
    members_by_tier: list[TierMembers] = strawberry.field(
        resolver=_members_by_tier,
        description="Members in each tier now (live tiers by rank, even empty)",
    )
    top_rewards: list[RewardRedemptions] = strawberry.field(
        resolver=_top_rewards,
        description="The rewards redeemed most in [from, to), cancelled redemptions left out",
    )
