"""Finding members (admin): `members(search:, filters, orderBy)` as a keyset-paged connection."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from models.member import MemberStatus
from schema.context import Info
from schema.exceptions import BadUserInput
from schema.ids import expect_id
from schema.pagination import page_size
from schema.types.member_list import DEFAULT_ORDER, MemberConnection, MemberOrder, decode_cursor
from services import member_search
from services.errors import DomainError


async def members(
    info: Info,
    first: int | None = 20,
    after: str | None = None,
    search: Annotated[
        str | None,
        strawberry.argument(
            description="A prefix or substring of the email, display name, externalId or "
            "referral code, in any case; blank: no search"
        ),
    ] = None,
    tier: Annotated[strawberry.ID | None, strawberry.argument(description="A Tier ID")] = None,
    status: MemberStatus | None = None,
    joined_after: Annotated[
        datetime | None, strawberry.argument(description="Joined at or after (inclusive)")
    ] = None,
    joined_before: Annotated[
        datetime | None, strawberry.argument(description="Joined before (exclusive)")
    ] = None,
    order_by: MemberOrder | None = DEFAULT_ORDER,
) -> MemberConnection:
    """Every member, erased ones included (their rows are anonymised), newest first unless
    `orderBy` says otherwise."""
    size = page_size(first)
    ordering = (order_by or DEFAULT_ORDER).ordering
    position = decode_cursor(after, ordering) if after is not None else None
    try:
        found = member_search.MemberFilter(
            search=member_search.clean_search(search),
            tier_id=expect_id(tier, "Tier", ["tier"]) if tier is not None else None,
            status=status,
            joined_after=joined_after,
            joined_before=joined_before,
        )
    except DomainError as exc:
        raise BadUserInput(exc.message, field=exc.field) from exc
    runtime = info.context.runtime
    async with runtime.read_sessions() as session:
        rows = await member_search.find_members(
            session, found, ordering, after=position, limit=size + 1
        )

    async def count() -> int:
        async with runtime.read_sessions() as session:
            return await member_search.count_members(session, found)

    return MemberConnection.from_page(
        rows, first=size, ordering=ordering, has_previous=position is not None, count=count
    )
