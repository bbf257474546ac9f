"""The ledger of a window, for accounting: amounts and ids, never personal data.

Descriptions and breakdown labels are left out (they may name a member, a reward chosen by
them, a file of theirs); members are named by id. Rows are read through a server-side cursor
in batches, in one snapshot, so a ledger of any size is exported in constant memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import EntryKind, EntryStatus, LedgerEntry
from services.errors import Invalid

BATCH = 5_000


@dataclass(frozen=True, slots=True)
class ExportedEntry:
    id: int
    member_id: int
    kind: EntryKind
    status: EntryStatus
    points: int
    reference: str | None
    created_at: datetime
    available_at: datetime | None
    expires_at: datetime | None
    actor: str


async def ledger_window(
    session: AsyncSession, start: datetime, end: datetime, *, batch: int = BATCH
) -> AsyncIterator[Sequence[ExportedEntry]]:
    """The entries created in [start, end), oldest first, `batch` at a time."""
    if end <= start:
        raise Invalid("the window must end after it starts", field=["to"])
    stmt = (
        select(
            LedgerEntry.id,
            LedgerEntry.member_id,
            LedgerEntry.kind,
            LedgerEntry.status,
            LedgerEntry.points,
            LedgerEntry.reference,
            LedgerEntry.created_at,
            LedgerEntry.available_at,
            LedgerEntry.expires_at,
            LedgerEntry.actor,
        )
        .where(LedgerEntry.created_at >= start, LedgerEntry.created_at < end)
        .order_by(LedgerEntry.created_at, LedgerEntry.id)
        .execution_options(yield_per=batch)
    )
    result = await session.stream(stmt)
    async for rows in result.partitions():
        yield [ExportedEntry(*row) for row in rows]
