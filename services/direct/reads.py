"""Member reads straight on asyncpg (PostgreSQL): the member row, and with it, when the
request will list them, the newest page of its transactions, in one statement.

A member's app opens on its dashboard (balance, tier, progress, last transactions): through
SQLAlchemy Core that was two statements and most of the request's CPU. Here the member and its
page come back in one round trip, in the shapes the direct writes hand over (`LockedMember`
is a `MemberRecord`, `WrittenEntry` an `EntryRecord`), so every field is still computed by
the schema's own resolvers. SQLite reads through SQLAlchemy Core (`schema.loaders`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from models import EntryKind, EntryStatus
from services.direct.writer import MEMBER_COLUMNS, DirectWriter, LockedMember, WrittenEntry

__all__ = ["MemberPage", "member_with_page", "members"]

# In the order `_entry` unpacks them; the breakdown as text, parsed by orjson (the pool's
# json codec is the standard library's, several times slower).
_ENTRY_COLUMNS = (
    "id", "member_id", "kind", "status", "points", "description", "reference",
    "created_at", "available_at", "expires_at", "breakdown::text",
)  # fmt: skip

# (The only text formatted into these statements is column names.)
_MEMBERS = f"SELECT {MEMBER_COLUMNS} FROM members AS m WHERE m.id = ANY($1::bigint[])"  # noqa: S608
# Newest first, as `Member.transactions` pages them (`id` descending, on the member's
# (member_id, id) index).
_MEMBER_WITH_PAGE = f"""
SELECT {MEMBER_COLUMNS},
       ARRAY(SELECT ROW({", ".join(f"e.{name}" for name in _ENTRY_COLUMNS)})
             FROM ledger_entries AS e
             WHERE e.member_id = m.id
             ORDER BY e.id DESC
             LIMIT $2) AS page
FROM members AS m
WHERE m.id = $1
"""  # noqa: S608


async def members(direct: DirectWriter, ids: Sequence[int]) -> list[LockedMember]:
    """The members of `ids` that exist, in no particular order."""
    rows = await direct.read_rows(_MEMBERS, list(ids))
    return [LockedMember.from_record(row) for row in rows]


async def member_with_page(direct: DirectWriter, member_id: int, size: int) -> MemberPage | None:
    """The member and its newest `size` entries, or None if there is no such member."""
    rows = await direct.read_rows(_MEMBER_WITH_PAGE, member_id, size)
    if not rows:
        return None
    row = rows[0]
    return LockedMember.from_record(row), [_entry(entry) for entry in row["page"]]


MemberPage = tuple[LockedMember, list[WrittenEntry]]


def _entry(row: Any) -> WrittenEntry:
    (
        id_, member_id, kind, status, points, description, reference,
        created_at, available_at, expires_at, breakdown,
    ) = row  # fmt: skip
    return WrittenEntry(
        id_, member_id, _KINDS[kind], _STATUSES[status], points, description, reference,
        created_at, available_at, expires_at, orjson.loads(breakdown),
    )  # fmt: skip


# The enums by value (a dict lookup; calling the enum costs several times more).
_KINDS = {kind.value: kind for kind in EntryKind}
_STATUSES = {status.value: status for status in EntryStatus}
