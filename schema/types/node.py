"""The Relay `Node` interface and `PageInfo`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import strawberry

from schema.ids import encode_cursor


@strawberry.interface(description="An object with an opaque global ID, usable with Query.node")
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None

    @classmethod
    def of_page(cls, cursors: Sequence[str], *, has_next: bool, has_previous: bool) -> PageInfo:
        """The page info of a page whose edges have these cursors, in order."""
        return cls(
            has_next_page=has_next,
            has_previous_page=has_previous,
            start_cursor=cursors[0] if cursors else None,
            end_cursor=cursors[-1] if cursors else None,
        )


class _HasId(Protocol):
    @property
    def id(self) -> int: ...


Row = TypeVar("Row", bound=_HasId)
Edge = TypeVar("Edge")


def page_of(
    rows: Sequence[Row],
    first: int,
    edge: Callable[[str, Row], Edge],
    *,
    has_previous: bool,
) -> tuple[list[Edge], PageInfo]:
    """The edges (`edge(cursor, row)`) and page info of a page read as up to `first + 1`
    rows by id: the extra row only says there is a next page."""
    cursors = [encode_cursor(row.id) for row in rows[:first]]
    edges = [edge(cursor, row) for cursor, row in zip(cursors, rows, strict=False)]
    return edges, PageInfo.of_page(cursors, has_next=len(rows) > first, has_previous=has_previous)
