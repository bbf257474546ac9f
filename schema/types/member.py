"""Members, their balances and tier progress."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from graphql import FieldNode, IntValueNode, NullValueNode, VariableNode
from sqlalchemy import bindparam, func, select
from strawberry.scalars import JSON

import models
from models.records import EntryRecord, MemberRecord
from schema.context import Info, Role
from schema.exceptions import BadUserInput, Forbidden
from schema.ids import decode_id, encode_id
from schema.pagination import after_id, page_size
from schema.types.experiments import ExperimentGroup
from schema.types.gamification import (
    Challenge,
    ChallengeProgress,
    MemberBadge,
    badges_of,
    challenges_of,
)
from schema.types.leaderboard import LeaderboardEntry
from schema.types.ledger import PointsTransactionConnection
from schema.types.node import Node
from schema.types.program import Promotion, Tier, TierProgress
from schema.types.redemption import RedemptionConnection
from schema.types.reward import Reward
from services import experiments as experiment_service
from services import rewards
from services import segments as segment_service
from services.leaderboards import Period
from services.offers import offers_for

if TYPE_CHECKING:
    from schema.loaders import Loaders
    from schema.types.segments import Segment

# A member's transactions, newest first: built once (building a statement and its cache key
# costs more than running it from SQLAlchemy's compiled cache).
_entries = models.LedgerEntry.__table__.c
_PAGE = (
    select(models.LedgerEntry.__table__)
    .where(_entries.member_id == bindparam("member_id"))
    .order_by(_entries.id.desc())
    .limit(bindparam("limit"))
)
_PAGE_BEFORE = _PAGE.where(_entries.id < bindparam("before_id"))
_COUNT = select(func.count()).where(_entries.member_id == bindparam("member_id"))


@strawberry.type
class PointsExpiry:
    points: int
    expires_at: datetime


@strawberry.type
class PointsBalance:
    available: int
    pending: int
    lifetime_earned: int
    redeemed: int
    expired: int
    member_pk: strawberry.Private[int]

    @strawberry.field  # next expiries, soonest first
    async def expiring_soon(self, info: Info) -> list[PointsExpiry]:
        lots = await info.context.loaders.expiring_soon.load(self.member_pk)
        return [PointsExpiry(points=p, expires_at=at) for p, at in lots]

    @classmethod
    def from_row(cls, row: MemberRecord) -> PointsBalance:
        return cls(
            available=row.available,
            pending=row.pending,
            lifetime_earned=row.lifetime_earned,
            redeemed=row.redeemed,
            expired=row.expired,
            member_pk=row.id,
        )


async def tier_of(loaders: Loaders, row: MemberRecord) -> Tier:
    """`Member.tier` (also for `schema.compiled.member_view`)."""
    return Tier.of(await loaders.catalog(tier_id=row.tier_id), row.tier_id)


async def tier_progress_of(loaders: Loaders, row: MemberRecord) -> TierProgress:
    """`Member.tierProgress` (also for `schema.compiled.member_view`)."""
    ranked = Tier.ranked_in(await loaders.catalog(tier_id=row.tier_id), row.tier_id)
    rank = next(t.rank for t in ranked if t.pk == row.tier_id)
    following = ranked[rank + 1] if rank + 1 < len(ranked) else None
    qualifying = row.qualifying_points
    return TierProgress(
        current=ranked[rank],
        next=following,
        qualifying_points=qualifying,
        points_to_next=max(following.threshold - qualifying, 0) if following else None,
    )


def _require_member_or_admin(info: Info) -> None:
    if info.context.viewer.role not in (Role.MEMBER, Role.ADMIN):
        raise Forbidden("only the member itself and admins read this")


strawberry.enum(models.MemberStatus, name="MemberStatus")


@strawberry.type(
    description="What is targeted at the member now (by a segment it is in, or early access "
    "open to it), most valuable first: promotions by multiplier, rewards by money value then "
    "points cost, challenges by reward points"
)
class Offers:
    promotions: list[Promotion]
    rewards: list[Reward]
    challenges: list[Challenge]


@strawberry.type
class Member(Node):
    id: strawberry.ID
    external_id: str | None
    email: str
    display_name: str
    birthday: date | None
    joined_at: datetime
    referral_code: str
    balance: PointsBalance
    status: models.MemberStatus
    row: strawberry.Private[MemberRecord]

    @classmethod
    def from_row(cls, row: MemberRecord) -> Member:
        return cls(
            id=strawberry.ID(encode_id("Member", row.id)),
            external_id=row.external_id,
            email=row.email,
            display_name=row.display_name,
            birthday=row.birthday,
            joined_at=row.joined_at,
            referral_code=row.referral_code,
            balance=PointsBalance.from_row(row),
            status=row.status,
            row=row,
        )

    # The merchant's own data and the member's leaderboard choice: the member itself and
    # admins (a service key reads `status`, not these).
    @strawberry.field
    def attributes(self, info: Info) -> JSON:
        _require_member_or_admin(info)
        return JSON(self.row.attributes or {})

    @strawberry.field
    def leaderboard_opt_out(self, info: Info) -> bool:
        _require_member_or_admin(info)
        return self.row.leaderboard_opt_out

    @strawberry.field  # the member's own token or an admin
    async def segments(
        self, info: Info
    ) -> list[Annotated[Segment, strawberry.lazy("schema.types.segments")]]:
        _require_member_or_admin(info)
        from schema.types.segments import Segment

        runtime = info.context.runtime
        async with runtime.read_sessions() as session:
            found = await segment_service.segments_of(session, self.row.id, runtime.clock.now())
        return [Segment.from_row(row) for row in found]

    # Admin only (FORBIDDEN otherwise); null when the promotion is no experiment or the member
    # is not eligible (a member never learns its group: a control member just lacks the offer).
    @strawberry.field
    async def experiment_group(
        self, info: Info, promotion_id: strawberry.ID
    ) -> ExperimentGroup | None:
        if info.context.viewer.role is not Role.ADMIN:
            raise Forbidden("only admins read experiment groups")
        decoded = decode_id(promotion_id)
        if decoded is None or decoded[0] != "Promotion":
            raise BadUserInput("`promotionId` is not a Promotion ID")
        runtime = info.context.runtime
        async with runtime.read_sessions() as session:
            return await experiment_service.experiment_group(
                session, decoded[1], self.row.id, runtime.clock.now()
            )

    @strawberry.field  # the member's own token or an admin
    async def offers(self, info: Info) -> Offers:
        _require_member_or_admin(info)
        runtime = info.context.runtime
        now = runtime.clock.now()
        async with runtime.read_sessions() as session:
            found = await offers_for(session, self.row.id, self.row.tier_id, now)
        return Offers(
            promotions=[Promotion.from_row(p) for p in found.promotions],
            rewards=[Reward.from_row(r, now) for r in found.rewards],
            challenges=[Challenge.from_row(c) for c in found.challenges],
        )

    @strawberry.field
    async def tier(self, info: Info) -> Tier:
        return await tier_of(info.context.loaders, self.row)

    @strawberry.field
    async def tier_progress(self, info: Info) -> TierProgress:
        return await tier_progress_of(info.context.loaders, self.row)

    @strawberry.field  # newest first
    async def transactions(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> PointsTransactionConnection:
        size = page_size(first)
        before_id = after_id(after)
        member_id = self.row.id
        rows: Sequence[EntryRecord] | None = None
        if before_id is None:  # perhaps read with the member (`newest_page_wanted`)
            rows = info.context.loaders.newest_page(member_id, size + 1)
        if rows is None:
            params = {"member_id": member_id, "limit": size + 1}
            if before_id is not None:
                params["before_id"] = before_id
            async with info.context.runtime.read_engine.connect() as connection:
                page = _PAGE if before_id is None else _PAGE_BEFORE
                rows = (await connection.execute(page, params)).all()

        async def count() -> int:
            async with info.context.runtime.read_engine.connect() as connection:
                total = await connection.scalar(_COUNT, {"member_id": member_id})
            return int(total or 0)

        return PointsTransactionConnection.from_page(
            rows, first=size, has_previous=before_id is not None, count=count
        )

    @strawberry.field  # newest first
    async def redemptions(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> RedemptionConnection:
        size = page_size(first)
        before_id = after_id(after)
        member_id = self.row.id
        reader = info.context.runtime.read_engine
        table = models.Redemption.__table__
        stmt = select(table).where(table.c.member_id == member_id)
        if before_id is not None:
            stmt = stmt.where(table.c.id < before_id)
        stmt = stmt.order_by(table.c.id.desc()).limit(size + 1)
        async with reader.connect() as connection:
            rows = (await connection.execute(stmt)).all()

        async def count() -> int:
            async with reader.connect() as connection:
                total = await connection.scalar(
                    select(func.count()).select_from(table).where(table.c.member_id == member_id)
                )
            return int(total or 0)

        return RedemptionConnection.from_page(
            rows, first=size, has_previous=before_id is not None, count=count
        )

    # Eligible, in-stock rewards: the most valuable affordable now first, then the closest.
    @strawberry.field
    async def recommended_rewards(self, info: Info, first: int | None = 5) -> list[Reward]:
        size = page_size(first, default=5)
        ctx = info.context
        tiers = await ctx.loaders.tiers(including=self.row.tier_id)
        threshold = next(t.threshold for t in tiers if t.id == self.row.tier_id)
        now = ctx.runtime.clock.now()
        async with ctx.runtime.read_sessions() as session:
            rows = await rewards.recommended(
                session,
                member_id=self.row.id,
                available=self.row.available,
                tier_threshold=threshold,
                now=now,
                first=size,
            )
        return [Reward.from_row(row, now) for row in rows]

    @strawberry.field  # null when unranked
    async def rank(self, info: Info, period: Period = Period.ALL_TIME) -> LeaderboardEntry | None:
        leaderboards = info.context.runtime.leaderboards
        assert leaderboards is not None, "the app always builds its leaderboards"
        standing = await leaderboards.rank(period, self.row.id)
        if standing is None:
            return None
        viewer = info.context.viewer
        return LeaderboardEntry.from_standing(standing, viewer.member_id)

    @strawberry.field
    async def badges(self, info: Info) -> list[MemberBadge]:
        return await badges_of(info, self.row.id)

    @strawberry.field  # running challenges, with progress in their current period
    async def challenges(self, info: Info) -> list[ChallengeProgress]:
        return await challenges_of(info, self.row.id)


def newest_page_wanted(member_field: FieldNode, variables: dict[str, Any]) -> int | None:
    """How many rows `Member.transactions` will read for the member selected by
    `member_field` (its page and one more, as the resolver reads them), when the selection
    names that field once, directly, with `first` given and no `after`: then the member's
    read can bring them along. None in any other case (the resolver reads them itself)."""
    found: FieldNode | None = None
    for selection in member_field.selection_set.selections if member_field.selection_set else ():
        if not isinstance(selection, FieldNode):
            return None  # fragments: not worth following here
        if selection.name.value == "transactions":
            if found is not None:
                return None
            found = selection
    if found is None:
        return None
    first: object = None
    for argument in found.arguments or ():
        value = argument.value
        given = variables.get(value.name.value) if isinstance(value, VariableNode) else value
        if argument.name.value == "after":
            if given is not None and not isinstance(given, NullValueNode):
                return None
        elif argument.name.value == "first":
            first = int(given.value) if isinstance(given, IntValueNode) else given
    if not isinstance(first, int) or isinstance(first, bool):
        return None
    try:
        return page_size(first) + 1
    except BadUserInput:
        return None
