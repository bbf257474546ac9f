"""Redemptions: the voucher (or donation receipt) a member got for its points."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import strawberry

import models
from models.records import RedemptionRecord
from schema.context import Info
from schema.ids import encode_id
from schema.types.node import Node, PageInfo, page_of
from schema.types.reward import Reward

strawberry.enum(models.RedemptionStatus, name="RedemptionStatus")


@strawberry.type
class Redemption(Node):
    id: strawberry.ID
    points: int
    status: models.RedemptionStatus
    code: str | None = strawberry.field(
        description="Voucher code to apply at checkout; null for donations"
    )
    receipt_number: str = strawberry.field(
        description="The reference of this redemption (a donation's receipt)"
    )
    value: float | None = strawberry.field(description="The reward's value when redeemed")
    created_at: datetime
    used_at: datetime | None
    cancelled_at: datetime | None
    row: strawberry.Private[RedemptionRecord]

    @classmethod
    def from_row(cls, row: RedemptionRecord) -> Redemption:
        return cls(
            id=strawberry.ID(encode_id("Redemption", row.id)),
            points=row.points,
            status=row.status,
            code=row.code,
            receipt_number=row.receipt_number,
            value=float(row.value) if row.value is not None else None,
            created_at=row.created_at,
            used_at=row.used_at,
            cancelled_at=row.cancelled_at,
            row=row,
        )

    @strawberry.field
    async def reward(self, info: Info) -> Reward:
        found = await info.context.loaders.rewards.reward.load(self.row.reward_id)
        assert found is not None, "a redemption's reward is never deleted"
        return Reward.from_row(found, info.context.runtime.clock.now())


@strawberry.type
class RedemptionEdge:
    cursor: str
    node: Redemption


@strawberry.type
class RedemptionConnection:
    edges: list[RedemptionEdge]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field
    async def total_count(self) -> int:
        return await self.count()  # counted only when asked for

    @classmethod
    def from_page(
        cls,
        rows: Sequence[RedemptionRecord],
        *,
        first: int,
        has_previous: bool,
        count: Callable[[], Awaitable[int]],
    ) -> RedemptionConnection:
        """`rows` holds up to first + 1 redemptions: the extra one only says there is more."""
        edges, page_info = page_of(
            rows,
            first,
            lambda cursor, r: RedemptionEdge(cursor=cursor, node=Redemption.from_row(r)),
            has_previous=has_previous,
        )
        return cls(edges=edges, page_info=page_info, count=count)
