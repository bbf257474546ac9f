"""Manual adjustments by admins: audited (actor and reason on the entry), never moving tiers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from models import EntryKind
from services.errors import Invalid
from services.ledger.entries import credit, debit, lock_member, settle
from services.ledger.idempotency import claim, record_result
from services.ledger.purchases import LedgerResult, reference_key, replay
from services.program import MAX_POINTS, clean_text, get_program


async def adjust_points(
    session: AsyncSession,
    *,
    member_id: int,
    points: int,
    reason: str,
    idempotency_key: str,
    actor: str,
    now: datetime,
) -> LedgerResult:
    if points == 0 or abs(points) > MAX_POINTS:
        raise Invalid(
            "points must be non-zero and at most 1,000,000,000", field=["input", "points"]
        )
    reason = clean_text(reason, ["input", "reason"], max_length=500)
    key = reference_key(idempotency_key, ["input", "idempotencyKey"])
    request = {"member": member_id, "points": points, "reason": reason}
    claimed = await claim(session, scope=f"adjust:{actor}", key=key, request=request, now=now)
    if claimed.first_use is not None:
        return await replay(session, claimed.first_use.entry_id)

    member = await lock_member(session, member_id)
    await settle(session, member, now)
    description = f"Adjustment: {reason}"
    if points > 0:
        program = await get_program(session)
        entry = credit(
            session,
            member,
            program,
            kind=EntryKind.ADJUSTMENT,
            points=points,
            now=now,
            description=description,
            actor=actor,
        )
    else:
        entry = await debit(
            session,
            member,
            kind=EntryKind.ADJUSTMENT,
            points=-points,
            now=now,
            description=description,
            actor=actor,
        )
    await session.flush()
    await record_result(session, claimed, entry_id=entry.id)
    return LedgerResult(entry=entry, member=member)
