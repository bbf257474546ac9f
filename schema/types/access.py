"""API keys as admins see them: never the secret."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import strawberry

import models
from schema.context import Info
from schema.ids import encode_id
from schema.types.node import Node, PageInfo, page_of
from schema.types.reward import Partner

ApiKeyRole = strawberry.enum(models.KeyRole, name="ApiKeyRole")
# The enum's GraphQL values are its names (SERVICE, ADMIN, PARTNER); the stored values are
# lower case, as the command line prints them.


@strawberry.type
class ApiKey(Node):
    id: strawberry.ID
    name: str
    role: models.KeyRole
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    partner_slug: strawberry.Private[str | None]

    @classmethod
    def from_row(cls, row: models.ApiKey) -> ApiKey:
        return cls(
            id=strawberry.ID(encode_id("ApiKey", row.id)),
            name=row.name,
            role=row.role,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
            partner_slug=row.partner_slug,
        )

    @strawberry.field  # set for PARTNER keys
    async def partner(self, info: Info) -> Partner | None:
        if self.partner_slug is None:
            return None
        found = await info.context.loaders.rewards.partner_by_slug.load(self.partner_slug)
        return Partner.from_row(found) if found is not None else None


@strawberry.type
class ApiKeyEdge:
    cursor: str
    node: ApiKey


@strawberry.type
class ApiKeyConnection:
    edges: list[ApiKeyEdge]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field
    async def total_count(self) -> int:
        return await self.count()

    @classmethod
    def from_page(
        cls,
        rows: Sequence[models.ApiKey],
        *,
        first: int,
        has_previous: bool,
        count: Callable[[], Awaitable[int]],
    ) -> ApiKeyConnection:
        edges, page_info = page_of(
            rows,
            first,
            lambda cursor, row: ApiKeyEdge(cursor=cursor, node=ApiKey.from_row(row)),
            has_previous=has_previous,
        )
        return cls(edges=edges, page_info=page_info, count=count)
