"""The audit trail: every admin and partner write, and the command-line tool's imports and
revocations, recorded in the transaction of the change.

An entry says who (the calling API key, as it was then; none for the command line), what (the
operation and the global ID of its target), when, and the target's changed fields before and
after, under their GraphQL names. Personal data is masked before it is stored (`mask`), and
erasing a member scrubs even the masks from its entries (`erase_personal_data`).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import AuditEntry

# Member fields that are personal data: stored masked, erased with the member.
PERSONAL_FIELDS = frozenset({"email", "displayName", "birthday", "externalId", "attributes"})
ERASED = "[erased]"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change: an API key (its id, name and role), or nobody for the CLI."""

    key_id: int | None = None
    name: str | None = None
    role: str | None = None  # ApiKeyRole's value: SERVICE, ADMIN, PARTNER


COMMAND_LINE = Actor()


def jsonable(value: Any) -> Any:
    """A field's value as the GraphQL API shows it, in JSON."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return float(value)  # as GraphQL's Float shows it
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    return value


def fields(obj: Any, spec: Mapping[str, str]) -> dict[str, Any]:
    """`obj`'s fields named by `spec` (GraphQL name -> attribute), as JSON values."""
    return {name: jsonable(getattr(obj, attribute)) for name, attribute in spec.items()}


def mask(name: str, value: Any) -> Any:
    """A personal field's value as the trail keeps it: enough to tell values apart at a
    glance (first character, an email's domain), never the value itself."""
    if name not in PERSONAL_FIELDS or value is None:
        return value
    if name == "attributes" and isinstance(value, dict):
        return {key: "***" for key in value}
    if name == "birthday":
        return "***"
    if name == "email" and isinstance(value, str) and "@" in value:
        local, _, domain = value.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if isinstance(value, str) and value:
        return f"{value[:1]}***"
    return "***"


def _masked(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {name: mask(name, value) for name, value in values.items()}


def record(
    session: AsyncSession,
    *,
    actor: Actor,
    operation: str,
    target_id: str | None,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    now: datetime,
) -> None:
    """Add an entry to the unit of work: it commits, or rolls back, with the change."""
    session.add(
        AuditEntry(
            at=now,
            actor_key_id=actor.key_id,
            actor_name=actor.name,
            actor_role=actor.role,
            operation=operation,
            target_id=target_id,
            before=_masked(before),
            after=_masked(after),
        )
    )


def record_change(
    session: AsyncSession,
    *,
    actor: Actor,
    operation: str,
    target_id: str,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    now: datetime,
) -> None:
    """Record an edit with only the fields it changed (an edit that changed nothing is
    recorded too, with empty objects: someone asked for it)."""
    changed = [name for name in after if before.get(name) != after[name]]
    record(
        session,
        actor=actor,
        operation=operation,
        target_id=target_id,
        before={name: before.get(name) for name in changed},
        after={name: after[name] for name in changed},
        now=now,
    )


async def erase_personal_data(session: AsyncSession, target_id: str) -> None:
    """Replace what the entries about `target_id` hold of its personal fields, masks
    included (a first letter and a domain are still personal data)."""
    entries = await session.scalars(select(AuditEntry).where(AuditEntry.target_id == target_id))
    for entry in entries:
        entry.before = _erased(entry.before)
        entry.after = _erased(entry.after)


def _erased(values: dict[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {
        name: (ERASED if name in PERSONAL_FIELDS and value is not None else value)
        for name, value in values.items()
    }


async def page(
    session: AsyncSession,
    *,
    first: int,
    before_id: int | None = None,
    target_id: str | None = None,
    actor_key_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> tuple[list[AuditEntry], Callable[[AsyncSession], Awaitable[int]]]:
    """Entries newest first (up to `first + 1`, the extra one saying more follow), and how
    to count every entry the filters match."""
    conditions: list[ColumnElement[bool]] = []
    if target_id is not None:
        conditions.append(AuditEntry.target_id == target_id)
    if actor_key_id is not None:
        conditions.append(AuditEntry.actor_key_id == actor_key_id)
    if start is not None:
        conditions.append(AuditEntry.at >= start)
    if end is not None:
        conditions.append(AuditEntry.at < end)
    stmt = select(AuditEntry).where(*conditions).order_by(AuditEntry.id.desc()).limit(first + 1)
    if before_id is not None:
        stmt = stmt.where(AuditEntry.id < before_id)
    rows = list(await session.scalars(stmt))

    async def count(counting: AsyncSession) -> int:
        total = await counting.scalar(
            select(func.count()).select_from(AuditEntry).where(*conditions)
        )
        return int(total or 0)

    return rows, count
