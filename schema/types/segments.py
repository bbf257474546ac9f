"""Segments as admins read them: the rule as stored (with the objects it names), how many
members are in it now, and who (by join date)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import strawberry

import models
from schema.context import Info, Role
from schema.exceptions import BadUserInput, Forbidden
from schema.ids import decode_cursor, encode_id
from schema.pagination import page_size
from schema.types.gamification import Badge
from schema.types.member import Member
from schema.types.node import Node, PageInfo
from schema.types.program import Tier
from services import segments as segment_service
from services.errors import DomainError
from services.segments import rule_groups


@strawberry.type
class IntRange:
    min: int | None
    max: int | None


@strawberry.type
class FloatRange:
    min: float | None
    max: float | None


@strawberry.type
class PurchaseCountCondition:
    last_days: int
    min: int | None
    max: int | None


@strawberry.type
class PurchaseAmountCondition:
    last_days: int
    min: float | None
    max: float | None


@strawberry.type
class AttributeCondition:
    key: str
    equals: str


@strawberry.type(description="The condition as stored; exactly one field is non-null")
class SegmentCondition:
    available_points: IntRange | None = None
    lifetime_points: IntRange | None = None
    purchase_count: PurchaseCountCondition | None = None
    purchase_amount: PurchaseAmountCondition | None = None
    days_since_last_purchase: IntRange | None = None
    joined_after: datetime | None = None
    joined_before: datetime | None = None
    birthday_month: int | None = None
    attribute: AttributeCondition | None = None
    stored: strawberry.Private[dict[str, Any]] = strawberry.field(default_factory=dict)

    @classmethod
    def from_stored(cls, condition: dict[str, Any]) -> SegmentCondition:
        ((name, value),) = condition.items()
        shown = cls(stored=condition)
        if name in ("availablePoints", "lifetimePoints", "daysSinceLastPurchase"):
            setattr(shown, _snake(name), IntRange(min=value.get("min"), max=value.get("max")))
        elif name == "purchaseCount":
            shown.purchase_count = PurchaseCountCondition(
                last_days=value["lastDays"], min=value.get("min"), max=value.get("max")
            )
        elif name == "purchaseAmount":
            shown.purchase_amount = PurchaseAmountCondition(
                last_days=value["lastDays"], min=value.get("min"), max=value.get("max")
            )
        elif name in ("joinedAfter", "joinedBefore"):
            setattr(shown, _snake(name), datetime.fromisoformat(value))
        elif name == "birthdayMonth":
            shown.birthday_month = value
        elif name == "attribute":
            shown.attribute = AttributeCondition(key=value["key"], equals=value["equals"])
        return shown

    @strawberry.field
    async def tier_in(self, info: Info) -> list[Tier] | None:
        ids = self.stored.get("tierIn")
        if ids is None:
            return None
        loaders = info.context.loaders
        return [Tier.of(await loaders.catalog(tier_id=pk), pk) for pk in ids]

    @strawberry.field
    async def has_badge(self, info: Info) -> Badge | None:
        pk = self.stored.get("hasBadge")
        if pk is None:
            return None
        badge = await info.context.loaders.badges.load(pk)
        return Badge.from_row(badge) if badge is not None else None

    @strawberry.field
    async def in_segment(self, info: Info) -> Segment | None:
        pk = self.stored.get("inSegment")
        if pk is None:
            return None
        async with info.context.runtime.read_sessions() as session:
            found = await session.get(models.Segment, pk)
        return Segment.from_row(found) if found is not None else None


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


@strawberry.type
class SegmentRule:
    all: list[SegmentCondition] | None
    any: list[SegmentCondition] | None

    @classmethod
    def from_stored(cls, rule: dict[str, Any]) -> SegmentRule:
        groups = rule_groups(rule)
        return cls(
            all=[SegmentCondition.from_stored(c) for c in groups["all"]]
            if "all" in groups
            else None,
            any=[SegmentCondition.from_stored(c) for c in groups["any"]]
            if "any" in groups
            else None,
        )


@strawberry.type
class SegmentMemberEdge:
    cursor: str
    node: Member


@strawberry.type
class SegmentMemberConnection:
    edges: list[SegmentMemberEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type(description="A named set of members, computed from the ledger and member data")
class Segment(Node):
    id: strawberry.ID
    name: str
    rule: SegmentRule
    created_at: datetime
    row: strawberry.Private[models.Segment]

    @classmethod
    def from_row(cls, row: models.Segment) -> Segment:
        return cls(
            id=strawberry.ID(encode_id("Segment", row.id)),
            name=row.name,
            rule=SegmentRule.from_stored(row.rule),
            created_at=row.created_at,
            row=row,
        )

    # Who else is in a segment is the program's business: a member reading its own segments
    # (Member.segments, or a targeted promotion's) sees names and rules, never the members.
    @strawberry.field
    async def member_count(self, info: Info) -> int:
        _admins_only(info)
        runtime = info.context.runtime
        async with runtime.read_sessions() as session:
            return await runtime.segment_counts.count(session, self.row, runtime.clock.now())

    @strawberry.field  # ordered by joinedAt, then id
    async def members(
        self, info: Info, first: int | None = 20, after: str | None = None
    ) -> SegmentMemberConnection:
        _admins_only(info)
        size = page_size(first)
        position = _position(after)
        runtime = info.context.runtime
        now = runtime.clock.now()
        async with runtime.read_sessions() as session:
            rows = await segment_service.members_page(
                session, self.row, now, first=size + 1, after=position
            )
            total = await runtime.segment_counts.count(session, self.row, now)
        cursors = [_cursor(row.joined_at, row.id) for row in rows[:size]]
        edges = [
            SegmentMemberEdge(cursor=cursor, node=Member.from_row(row))
            for cursor, row in zip(cursors, rows, strict=False)
        ]
        page_info = PageInfo.of_page(
            cursors, has_next=len(rows) > size, has_previous=position is not None
        )
        return SegmentMemberConnection(edges=edges, page_info=page_info, total_count=total)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _cursor(joined_at: datetime, member_id: int) -> str:
    """A keyset position: the member's id and join date (in microseconds, exactly)."""
    micros = (joined_at - _EPOCH) // timedelta(microseconds=1)
    return f"{encode_id('cursor', member_id)}.{micros}"


def _position(after: str | None) -> tuple[datetime, int] | None:
    if after is None:
        return None
    head, _, micros = after.partition(".")
    try:
        member_id = decode_cursor(head, ["after"])
        joined_at = _EPOCH + timedelta(microseconds=int(micros))
    except (DomainError, ValueError, OverflowError) as exc:
        raise BadUserInput("`after` is not a cursor of this connection") from exc
    return joined_at, member_id


def _admins_only(info: Info) -> None:
    if info.context.viewer.role is not Role.ADMIN:
        raise Forbidden("only admins read who is in a segment")


async def segment_by_pk(info: Info, pk: int | None) -> Segment | None:
    """The segment a targeted object names (batched per request), or None."""
    if pk is None:
        return None
    row = await info.context.loaders.segments.load(pk)
    return Segment.from_row(row) if row is not None else None
