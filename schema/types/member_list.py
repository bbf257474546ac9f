"""The admin's member listing: its order, edges, connection and keyset cursors."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import strawberry

from models.records import MemberRecord
from schema.exceptions import BadUserInput
from schema.types.member import Member
from schema.types.node import PageInfo
from services.member_search import Direction, OrderField, Ordering, Position

strawberry.enum(OrderField, name="MemberOrderField")
strawberry.enum(Direction, name="OrderDirection")


@strawberry.input
class MemberOrder:
    field: OrderField
    direction: Direction = strawberry.field(
        default=Direction.DESC, description="Ties are broken by id, so cursors stay stable"
    )

    @property
    def ordering(self) -> Ordering:
        return Ordering(field=self.field, direction=self.direction)


DEFAULT_ORDER = MemberOrder(field=OrderField.JOINED_AT, direction=Direction.DESC)


@strawberry.type
class MemberEdge:
    cursor: str
    node: Member


@strawberry.type
class MemberConnection:
    edges: list[MemberEdge]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field
    async def total_count(self) -> int:
        # Every member the search and filters keep, not just this page; counted only when asked.
        return await self.count()

    @classmethod
    def from_page(
        cls,
        rows: Sequence[MemberRecord],
        *,
        first: int,
        ordering: Ordering,
        has_previous: bool,
        count: Callable[[], Awaitable[int]],
    ) -> MemberConnection:
        """`rows` holds up to first + 1 members: the extra one only says there is a next page."""
        edges = [
            MemberEdge(cursor=encode_cursor(ordering, row), node=Member.from_row(row))
            for row in rows[:first]
        ]
        page_info = PageInfo.of_page(
            [edge.cursor for edge in edges], has_next=len(rows) > first, has_previous=has_previous
        )
        return cls(edges=edges, page_info=page_info, count=count)


# A cursor names its ordering (field and direction) and the member's keyset position:
# "members:<field>:<direction>:<sort value>:<id>", a date as microseconds since the epoch.
_CURSOR_KIND = "members"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_POINTS_RANGE = range(-(2**31), 2**31)  # the balance columns are 32-bit
_ID_RANGE = range(1, 2**63)
_MAX_CURSOR_LENGTH = 200


def encode_cursor(ordering: Ordering, row: MemberRecord) -> str:
    value = ordering.sort_value(row)
    number = (value - _EPOCH) // timedelta(microseconds=1) if isinstance(value, datetime) else value
    raw = f"{_CURSOR_KIND}:{ordering.field}:{ordering.direction}:{number}:{row.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, ordering: Ordering) -> Position:
    """The keyset position an `after` cursor holds; BAD_USER_INPUT when it is malformed or was
    given out for another ordering."""
    malformed = BadUserInput("`after` is not a cursor of this connection")
    if len(cursor) > _MAX_CURSOR_LENGTH:
        raise malformed
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise malformed from exc
    parts = raw.split(":")
    if len(parts) != 5 or parts[0] != _CURSOR_KIND:
        raise malformed
    if parts[1:3] != [ordering.field.value, ordering.direction.value]:
        raise BadUserInput(
            "`after` belongs to another ordering: page with the `orderBy` it was given for"
        )
    number, member_id = _integer(parts[3]), _integer(parts[4])
    if number is None or member_id is None or member_id not in _ID_RANGE:
        raise malformed
    if ordering.field is not OrderField.JOINED_AT:
        if number not in _POINTS_RANGE:
            raise malformed
        return number, member_id
    try:
        return _EPOCH + timedelta(microseconds=number), member_id
    except OverflowError as exc:
        raise malformed from exc


def _integer(text: str) -> int | None:
    """`text` as an integer when it is written as encode_cursor writes one, else None."""
    try:
        number = int(text)
    except ValueError:
        return None
    return number if str(number) == text else None
