"""Points transactions (ledger entries), their breakdown, and their connection."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

import models
from models.records import EntryRecord
from schema.context import Info
from schema.ids import encode_id
from schema.types.node import Node, PageInfo, page_of
from services.activity_types import BUILT_IN_KEY

if TYPE_CHECKING:
    from schema.types.activity import ActivityType

# The ledger's own enums, exposed under the contract's names.
strawberry.enum(models.EntryKind, name="TransactionKind")
strawberry.enum(models.EntryStatus, name="TransactionStatus")


@strawberry.enum
class ActivityKind(enum.Enum):
    REVIEW = "REVIEW"
    SOCIAL_SHARE = "SOCIAL_SHARE"
    CUSTOM = "CUSTOM"  # named by RecordActivityInput.activityType


@strawberry.type
class PointsComponent:
    label: str
    points: int


@strawberry.type
class PointsTransaction(Node):
    id: strawberry.ID
    kind: models.EntryKind
    points: int
    status: models.EntryStatus
    description: str
    reference: str | None
    created_at: datetime
    available_at: datetime | None
    expires_at: datetime | None
    row: strawberry.Private[EntryRecord]

    @strawberry.field
    def breakdown(self) -> list[PointsComponent]:
        # Built only when asked for: dashboards list transactions without it.
        return [PointsComponent(label=c["label"], points=c["points"]) for c in self.row.breakdown]

    @strawberry.field  # for ACTIVITY, REVIEW and SOCIAL_SHARE entries
    async def activity_type(
        self, info: Info
    ) -> Annotated[ActivityType, strawberry.lazy("schema.types.activity")] | None:
        from schema.types.activity import ActivityType

        loaders = info.context.loaders
        if self.row.kind is models.EntryKind.ACTIVITY:
            found = await loaders.entry_activity_types.load(self.row.id)
        elif self.row.kind in BUILT_IN_KEY:
            found = await loaders.activity_type_by_key.load(BUILT_IN_KEY[self.row.kind])
        else:
            return None
        return ActivityType.from_row(found, await loaders.program()) if found else None

    @classmethod
    def from_row(cls, row: EntryRecord) -> PointsTransaction:
        return cls(
            id=strawberry.ID(encode_id("PointsTransaction", row.id)),
            kind=row.kind,
            points=row.points,
            status=row.status,
            description=row.description,
            reference=row.reference,
            created_at=row.created_at,
            available_at=row.available_at,
            expires_at=row.expires_at,
            row=row,
        )


@strawberry.type
class PurchasePreview:
    points: int
    breakdown: list[PointsComponent]


@strawberry.type
class PointsTransactionEdge:
    cursor: str
    node: PointsTransaction


@strawberry.type
class PointsTransactionConnection:
    edges: list[PointsTransactionEdge]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field
    async def total_count(self) -> int:
        # All the member's transactions, not just this page; counted only when asked for.
        return await self.count()

    @classmethod
    def from_page(
        cls,
        rows: Sequence[EntryRecord],
        *,
        first: int,
        has_previous: bool,
        count: Callable[[], Awaitable[int]],
    ) -> PointsTransactionConnection:
        """`rows` holds up to first + 1 entries: the extra one only says there is a next page."""

        def edge(cursor: str, row: EntryRecord) -> PointsTransactionEdge:
            return PointsTransactionEdge(cursor=cursor, node=PointsTransaction.from_row(row))

        edges, page_info = page_of(rows, first, edge, has_previous=has_previous)
        return cls(edges=edges, page_info=page_info, count=count)
