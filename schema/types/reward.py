"""The rewards catalog and partner brands as clients see them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from sqlalchemy import ColumnElement, func, select

import models
from models.records import PartnerRecord, RewardRecord
from schema.context import Info, Role
from schema.exceptions import BadUserInput, Forbidden, Unauthenticated
from schema.ids import encode_id
from schema.pagination import after_id, page_size
from schema.types.node import Node, PageInfo, page_of
from schema.types.program import Tier
from services.rewards import (
    audience_segments,
    for_audience,
    from_active_partner,
    is_available,
    not_ended,
)

if TYPE_CHECKING:
    from schema.types.segments import Segment

strawberry.enum(models.RewardKind, name="RewardKind")


@strawberry.type
class DonationTotal:
    """What members have given through a donation reward so far."""

    redemptions: int
    points: int
    amount: float


@strawberry.type
class Reward(Node):
    id: strawberry.ID
    name: str
    description: str
    kind: models.RewardKind
    cost: int
    value: float | None
    stock: int | None
    starts_at: datetime | None
    ends_at: datetime | None
    available: bool = strawberry.field(description="In stock and inside its dates")
    per_member_limit: int | None = strawberry.field(
        description="How many times one member may redeem it (cancelled ones do not count)"
    )
    row: strawberry.Private[RewardRecord]

    @classmethod
    def from_row(cls, row: RewardRecord, now: datetime) -> Reward:
        return cls(
            id=strawberry.ID(encode_id("Reward", row.id)),
            name=row.name,
            description=row.description,
            kind=row.kind,
            cost=row.cost,
            value=float(row.value) if row.value is not None else None,
            stock=row.stock,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            available=is_available(row, now),
            per_member_limit=row.per_member_limit,
            row=row,
        )

    @strawberry.field
    async def partner(self, info: Info) -> Partner | None:
        if self.row.partner_id is None:
            return None
        found = await info.context.loaders.rewards.partner.load(self.row.partner_id)
        return Partner.from_row(found) if found is not None else None

    @strawberry.field
    async def minimum_tier(self, info: Info) -> Tier | None:
        tier_id = self.row.minimum_tier_id
        if tier_id is None:
            return None
        return Tier.of(await info.context.loaders.catalog(tier_id=tier_id), tier_id)

    @strawberry.field  # null when untargeted
    async def segment(
        self, info: Info
    ) -> Annotated[Segment, strawberry.lazy("schema.types.segments")] | None:
        from schema.types.segments import segment_by_pk

        return await segment_by_pk(info, self.row.segment_id)

    @strawberry.field
    def early_access_starts_at(self) -> datetime | None:
        return self.row.early_access_starts_at

    @strawberry.field  # members at or above it may redeem from earlyAccessStartsAt
    async def early_access_tier(self, info: Info) -> Tier | None:
        tier_id = self.row.early_access_tier_id
        if tier_id is None:
            return None
        return Tier.of(await info.context.loaders.catalog(tier_id=tier_id), tier_id)

    @strawberry.field  # its members may redeem from earlyAccessStartsAt
    async def early_access_segment(
        self, info: Info
    ) -> Annotated[Segment, strawberry.lazy("schema.types.segments")] | None:
        from schema.types.segments import segment_by_pk

        return await segment_by_pk(info, self.row.early_access_segment_id)

    @strawberry.field  # donations only: what members have given through it so far
    async def donated(self, info: Info) -> DonationTotal | None:
        if self.kind is not models.RewardKind.DONATION:
            return None
        total = await info.context.loaders.rewards.donated.load(self.row.id)
        return DonationTotal(
            redemptions=total.redemptions, points=total.points, amount=float(total.amount)
        )


@strawberry.type
class RewardEdge:
    cursor: str
    node: Reward


@strawberry.type
class RewardConnection:
    edges: list[RewardEdge]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field
    async def total_count(self) -> int:
        return await self.count()  # counted only when asked for


async def reward_page(
    info: Info,
    *,
    first: int | None,
    after: str | None,
    filters: Sequence[ColumnElement[bool]] = (),
    deactivated_partners: bool = False,
) -> RewardConnection:
    """Rewards still in the catalog (upcoming ones included, ended ones and those of
    deactivated partners not, unless `deactivated_partners`), oldest first."""
    size = page_size(first)
    start = after_id(after)
    now = info.context.runtime.clock.now()
    rewards = models.Reward.__table__.c
    conditions = [not_ended(now), *filters]
    if not deactivated_partners:
        conditions.append(from_active_partner())
    audience = await viewer_audience(info, now)
    if audience is not None:
        conditions.append(audience)
    stmt = select(models.Reward.__table__).where(*conditions)
    if start is not None:
        stmt = stmt.where(rewards.id > start)
    stmt = stmt.order_by(rewards.id).limit(size + 1)
    engine = info.context.runtime.read_engine
    async with engine.connect() as connection:
        rows = (await connection.execute(stmt)).all()

    async def count() -> int:
        async with engine.connect() as connection:
            total = await connection.scalar(
                select(func.count()).select_from(models.Reward.__table__).where(*conditions)
            )
        return int(total or 0)

    edges, page_info = page_of(
        rows,
        size,
        lambda cursor, r: RewardEdge(cursor=cursor, node=Reward.from_row(r, now)),
        has_previous=start is not None,
    )
    return RewardConnection(edges=edges, page_info=page_info, count=count)


async def viewer_audience(info: Info, now: datetime) -> ColumnElement[bool] | None:
    """SQL: the rewards that exist for the caller (None for an admin: every one). A targeted
    reward exists only for its segment's members; an early-access one, before its public
    start, only for its audience."""
    ctx = info.context
    viewer = ctx.viewer
    if viewer.role is Role.ADMIN:
        return None
    member = (
        await ctx.loaders.member.load(viewer.member_id)
        if viewer.role is Role.MEMBER and viewer.member_id is not None
        else None
    )
    if member is None:
        return for_audience(None, None, now)
    tiers = await ctx.loaders.tiers(including=member.tier_id)
    threshold = next(t.threshold for t in tiers if t.id == member.tier_id)
    async with ctx.runtime.read_sessions() as session:
        segments = await audience_segments(session, member.id, now)
    return for_audience(segments, threshold, now)


async def visible_reward(info: Info, reward_id: int) -> Reward | None:
    """The reward, if it exists for the caller (node(id))."""
    now = info.context.runtime.clock.now()
    audience = await viewer_audience(info, now)
    table = models.Reward.__table__
    stmt = select(table).where(table.c.id == reward_id)
    if audience is not None:
        stmt = stmt.where(audience)
    async with info.context.runtime.read_engine.connect() as connection:
        row = (await connection.execute(stmt)).first()
    return Reward.from_row(row, now) if row is not None else None


@strawberry.type
class PartnerSettlement:
    redemptions: int
    points_redeemed: int
    amount_owed: float


@strawberry.type
class Partner(Node):
    id: strawberry.ID
    name: str
    slug: str
    active: bool = strawberry.field(
        description="False once deactivated: keys refused, rewards out of the catalog, "
        "settlement still readable"
    )
    pk: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: PartnerRecord) -> Partner:
        return cls(
            id=strawberry.ID(encode_id("Partner", row.id)),
            name=row.name,
            slug=row.slug,
            active=row.deactivated_at is None,
            pk=row.id,
        )

    @strawberry.field  # a deactivated partner's rewards: for admins only (out of the catalog)
    async def rewards(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> RewardConnection:
        return await reward_page(
            info,
            first=first,
            after=after,
            filters=[models.Reward.partner_id == self.pk],
            deactivated_partners=info.context.viewer.role is Role.ADMIN,
        )

    @strawberry.field  # the partner itself (own brand) or an admin only
    async def settlement(
        self,
        info: Info,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
    ) -> PartnerSettlement | None:
        viewer = info.context.viewer
        if viewer.role is Role.ANONYMOUS:
            raise Unauthenticated(viewer.credential_problem or "a settlement needs a credential")
        own_brand = viewer.role is Role.PARTNER and viewer.partner_slug == self.slug
        if not (own_brand or viewer.role is Role.ADMIN):
            raise Forbidden("only the partner itself or an admin may read its settlement")
        if to <= from_:
            raise BadUserInput("`to` must be after `from`")
        figures = await info.context.loaders.rewards.settlement.load((self.pk, from_, to))
        return PartnerSettlement(
            redemptions=figures.redemptions,
            points_redeemed=figures.points_redeemed,
            amount_owed=float(figures.amount_owed),
        )
