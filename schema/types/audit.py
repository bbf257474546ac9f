"""The audit trail as admins read it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import strawberry
from strawberry.scalars import JSON

import models
from schema.ids import encode_id
from schema.types.node import Node, PageInfo, page_of


@strawberry.type
class AuditActor:
    id: strawberry.ID  # the API key's id (ApiKey.id)
    name: str
    role: models.KeyRole


@strawberry.type
class AuditEntry(Node):
    id: strawberry.ID
    at: datetime
    actor: AuditActor | None  # null: the command-line tool
    operation: str
    target_id: strawberry.ID | None
    before: JSON | None
    after: JSON | None

    @classmethod
    def from_row(cls, row: models.AuditEntry) -> AuditEntry:
        actor = None
        if row.actor_key_id is not None:
            actor = AuditActor(
                id=strawberry.ID(encode_id("ApiKey", row.actor_key_id)),
                name=row.actor_name or "",
                role=models.KeyRole[row.actor_role or "ADMIN"],
            )
        return cls(
            id=strawberry.ID(encode_id("AuditEntry", row.id)),
            at=row.at,
            actor=actor,
            operation=row.operation,
            target_id=strawberry.ID(row.target_id) if row.target_id is not None else None,
            before=JSON(row.before) if row.before is not None else None,
            after=JSON(row.after) if row.after is not None else None,
        )


@strawberry.type
class AuditEntryEdge:
    cursor: str
    node: AuditEntry


@strawberry.type
class AuditEntryConnection:
    edges: list[AuditEntryEdge]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field
    async def total_count(self) -> int:
        return await self.count()

    @classmethod
    def from_page(
        cls,
        rows: Sequence[models.AuditEntry],
        *,
        first: int,
        has_previous: bool,
        count: Callable[[], Awaitable[int]],
    ) -> AuditEntryConnection:
        edges, page_info = page_of(
            rows,
            first,
            lambda cursor, row: AuditEntryEdge(cursor=cursor, node=AuditEntry.from_row(row)),
            has_previous=has_previous,
        )
        return cls(edges=edges, page_info=page_info, count=count)
