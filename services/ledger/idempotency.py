"""Idempotency keys, claimed in the same transaction as the entries they protect."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import IdempotencyRecord
from models.base import UtcDateTime
from services.errors import IdempotencyConflict

# The same text on PostgreSQL and SQLite (3.35+). Written out because SQLAlchemy does not cache
# the compiled form of dialect inserts with ON CONFLICT, and this runs on every earn.
_CLAIM = text(
    "INSERT INTO idempotency_records (scope, key, fingerprint, created_at) "
    "VALUES (:scope, :key, :fingerprint, :created_at) "
    "ON CONFLICT (scope, key) DO NOTHING RETURNING id"
).bindparams(bindparam("created_at", type_=UtcDateTime()))


def fingerprint(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Claim:
    record_id: int
    first_use: IdempotencyRecord | None  # set when this is a retry of an earlier request


async def claim(
    session: AsyncSession, *, scope: str, key: str, request: dict[str, Any], now: datetime
) -> Claim:
    """Claim `key` in `scope` for this request.

    A new key is inserted (the caller does the work, then `record_result`); a key already
    taken by the same input returns the record of its first use. A concurrent
    first use is waited for: the insert blocks on the unique index until that transaction ends.
    Raises IdempotencyConflict when the key was used with different input.
    """
    digest = fingerprint(request)
    new_id = await session.scalar(
        _CLAIM, {"scope": scope, "key": key, "fingerprint": digest, "created_at": now}
    )
    if new_id is not None:
        return Claim(record_id=new_id, first_use=None)
    record = await session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
        )
    )
    assert record is not None, "a conflicting key must be visible once its transaction committed"
    if record.fingerprint != digest:
        raise IdempotencyConflict(
            "this idempotency key was already used with different input", field=["input"]
        )
    return Claim(record_id=record.id, first_use=record)


async def record_result(session: AsyncSession, claimed: Claim, *, entry_id: int) -> None:
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.id == claimed.record_id)
        .values(entry_id=entry_id)
    )
