"""The audit trail (admin): newest first, by target, actor and time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from schema.context import Info
from schema.exceptions import BadUserInput
from schema.ids import decode_id
from schema.pagination import after_id, page_size
from schema.types.audit import AuditEntryConnection
from services import audit


async def audit_log(
    info: Info,
    first: int | None = 20,
    after: str | None = None,
    target_id: strawberry.ID | None = None,
    actor_id: strawberry.ID | None = None,
    from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
    to: datetime | None = None,
) -> AuditEntryConnection:
    size = page_size(first)
    before_id = after_id(after)
    actor_key_id = None
    if actor_id is not None:
        decoded = decode_id(actor_id)
        if decoded is None or decoded[0] != "ApiKey":
            raise BadUserInput("`actorId` is not an ApiKey ID")
        actor_key_id = decoded[1]
    sessions = info.context.runtime.read_sessions
    async with sessions() as session:
        rows, count = await audit.page(
            session,
            first=size,
            before_id=before_id,
            target_id=target_id,
            actor_key_id=actor_key_id,
            start=from_,
            end=to,
        )

    async def total() -> int:
        async with sessions() as session:
            return await count(session)

    return AuditEntryConnection.from_page(
        rows, first=size, has_previous=before_id is not None, count=total
    )
