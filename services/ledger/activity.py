"""Points for reviews and social shares: once per (member, kind, reference), capped per day."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import EntryKind, LedgerEntry
from services.catalog import Catalog, current_catalog
from services.errors import Invalid, LimitReached
from services.gamification import challenges
from services.ledger.entries import credit, lock_member, settle
from services.ledger.idempotency import claim, record_result
from services.ledger.purchases import LedgerResult, reference_key, replay
from services.tiers import refresh_tier

ACTIVITY_KINDS = {EntryKind.REVIEW: "review", EntryKind.SOCIAL_SHARE: "social share"}


async def record_activity(
    session: AsyncSession,
    *,
    member_id: int,
    kind: EntryKind,
    reference: str,
    now: datetime,
    actor: str = "system",
    catalog: Catalog | None = None,
) -> LedgerResult:
    if kind not in ACTIVITY_KINDS:
        raise Invalid("not an activity kind", field=["input", "kind"])
    reference = reference_key(reference, ["input", "reference"])
    claimed = await claim(
        session, scope=f"activity:{member_id}:{kind.value}", key=reference, request={}, now=now
    )
    if claimed.first_use is not None:
        return await replay(session, claimed.first_use.entry_id)

    member = await lock_member(session, member_id)
    await settle(session, member, now)
    catalog = await current_catalog(session, catalog, now)
    program = catalog.program
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = await session.scalar(
        select(func.count()).where(
            LedgerEntry.member_id == member_id,
            LedgerEntry.kind == kind,
            LedgerEntry.created_at >= start_of_day,
        )
    )
    if (today or 0) >= program.daily_activity_cap:
        raise LimitReached(
            f"at most {program.daily_activity_cap} {ACTIVITY_KINDS[kind]} awards a day",
            field=["input", "kind"],
        )
    points = program.review_points if kind is EntryKind.REVIEW else program.social_share_points
    entry = credit(
        session,
        member,
        program,
        kind=kind,
        points=points,
        now=now,
        description=f"{ACTIVITY_KINDS[kind].capitalize()} {reference}",
        reference=reference,
        actor=actor,
    )
    if catalog.gamified_at(now):
        await session.flush()
        await challenges.after_change(session, member, program, now)
    await refresh_tier(session, member, program, catalog.tiers, now)
    await session.flush()
    await record_result(session, claimed, entry_id=entry.id)
    return LedgerResult(entry=entry, member=member)
