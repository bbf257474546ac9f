"""The Relay `Node` interface and `PageInfo`."""

from __future__ import annotations

import strawberry


@strawberry.interface(description="An object with an opaque global ID, usable with Query.node")
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None
