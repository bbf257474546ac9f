"""Expiring-points reminders: a points.expiring member event `expiryReminderDays` before a
member's points expire, once per member and expiry date (UTC), for the points expiring that
day. Run by the sweep; each reminder claims its (member, date) key, so a rerun, a concurrent
sweep or a later lot expiring the same day sends nothing twice."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import EntryStatus, EventKind, IdempotencyRecord, LedgerEntry
from services.events import record_event
from services.ledger.entries import lock_member
from services.ledger.idempotency import claim
from services.program import get_program

# Lots whose reminder moment passed within this much before now are still reminded (a sweep
# that did not run for a while catches up).
LOOKBACK = timedelta(days=1)


def scope(member_id: int) -> str:
    return f"expiring:{member_id}"


async def remind_expiring(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Write the reminders due now; returns how many."""
    async with sessions() as session:
        days = (await get_program(session)).expiry_reminder_days
        if days is None:
            return 0
        horizon = now + timedelta(days=days)
        lots = await session.execute(
            select(LedgerEntry.member_id, LedgerEntry.expires_at, LedgerEntry.remaining).where(
                LedgerEntry.status == EntryStatus.POSTED,
                LedgerEntry.remaining > 0,
                LedgerEntry.expires_at > horizon - LOOKBACK,
                LedgerEntry.expires_at <= horizon,
            )
        )
        due: dict[tuple[int, date], list[tuple[datetime, int]]] = defaultdict(list)
        for member_id, expires_at, remaining in lots:
            due[(member_id, expires_at.date())].append((expires_at, remaining))
        if not due:
            return 0
        sent = set(
            (
                await session.execute(
                    select(IdempotencyRecord.scope, IdempotencyRecord.key).where(
                        IdempotencyRecord.scope.in_({scope(m) for m, _ in due})
                    )
                )
            ).tuples()
        )
    reminded = 0
    for (member_id, day), found in sorted(due.items()):
        if (scope(member_id), day.isoformat()) in sent:
            continue
        async with sessions.begin() as session:
            await lock_member(session, member_id, erased_ok=True)  # its events, in order
            claimed = await claim(
                session, scope=scope(member_id), key=day.isoformat(), request={}, now=now
            )
            if claimed.first_use is not None:
                continue  # a concurrent sweep reminded it
            data = {
                "points": sum(points for _, points in found),
                "expiresAt": min(at for at, _ in found).isoformat(),
            }
            record_event(session, member_id, EventKind.POINTS_EXPIRING, now, data)
            reminded += 1
    return reminded
