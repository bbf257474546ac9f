"""The scheduled sweep: activates pending points and expires lots that are due, for every
member, in small transactions, and pays birthdays and anniversaries. Running it twice writes
nothing the second time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import QUALIFYING_KINDS, LedgerEntry, Member, Tier
from services import rollup
from services.celebrations import DEFAULT_LOOKBACK, pay_celebrations
from services.leaderboards.sql import prune_counts
from services.ledger.entries import lock_member, settle
from services.ledger.reminders import remind_expiring
from services.program import get_program, list_tiers
from services.tiers import TierChange, move_off, refresh_tier

BATCH = 200
# How long after a tier's deletion the sweep looks for members a racing write left on it.
RETIRED_LOOKBACK = timedelta(days=2)


@dataclass(slots=True)
class SweepReport:
    members_settled: int = 0
    tiers_refreshed: int = 0
    tier_changes: list[TierChange] | None = None
    # Celebrations (services.celebrations): birthdays and enrolment anniversaries paid.
    birthdays_paid: int = 0
    anniversaries_paid: int = 0
    # points.expiring reminders written (services.ledger.reminders).
    expiry_reminders: int = 0
    # Leaderboard counts of past months and weeks deleted.
    leaderboard_counts_pruned: int = 0


async def sweep(
    sessions: async_sessionmaker[AsyncSession],
    now: datetime,
    *,
    window_lookback: timedelta = timedelta(days=2),
    celebration_lookback: timedelta = DEFAULT_LOOKBACK,
) -> SweepReport:
    report = SweepReport(tier_changes=[])
    while True:
        async with sessions.begin() as session:
            due = list(
                await session.scalars(
                    select(Member.id)
                    .where(Member.next_settlement_at <= now)
                    .order_by(Member.id)
                    .limit(BATCH)
                )
            )
            for member_id in due:
                member = await lock_member(session, member_id, erased_ok=True)
                await settle(session, member, now)
        report.members_settled += len(due)
        if len(due) < BATCH:
            break
    # Celebrations: paid once each (idempotent), catching up on days the sweep did not run.
    celebrations = await pay_celebrations(sessions, now, lookback=celebration_lookback)
    report.birthdays_paid = celebrations.birthdays_paid
    report.anniversaries_paid = celebrations.anniversaries_paid
    await _refresh_windowed_tiers(sessions, now, window_lookback, report)
    await _move_off_retired_tiers(sessions, now, report)
    report.expiry_reminders = await remind_expiring(sessions, now)
    # Housekeeping of derived tables: the charts' rollup folds what the ledger's trigger
    # appended since the last sweep, so readers add up few changes (services.rollup); the
    # leaderboard counts of periods long over go (services.leaderboards.sql.prune_counts).
    async with sessions.begin() as session:
        await rollup.fold(session)
        report.leaderboard_counts_pruned = await prune_counts(session, now)
    return report


async def _move_off_retired_tiers(
    sessions: async_sessionmaker[AsyncSession], now: datetime, report: SweepReport
) -> None:
    """Members a write left on a tier while it was being deleted (deleteTier moved the rest):
    placed by their points now, set-based. Only recently retired tiers are looked at (such a
    race ends within seconds), so the members table is scanned only for a while after."""
    async with sessions.begin() as session:
        recent = select(Tier.id).where(Tier.deleted_at > now - RETIRED_LOOKBACK)
        if not (await session.scalars(recent)).first():
            return
        stranded = list(
            await session.scalars(
                select(Member.tier_id).where(Member.tier_id.in_(recent)).distinct()
            )
        )
        changes = await move_off(session, stranded, now) if stranded else []
    report.tiers_refreshed += len(changes)
    if report.tier_changes is not None:
        report.tier_changes.extend(changes)


async def _refresh_windowed_tiers(
    sessions: async_sessionmaker[AsyncSession],
    now: datetime,
    lookback: timedelta,
    report: SweepReport,
) -> None:
    """With a tier window, points age out of it without any write: re-place the members whose
    qualifying entries crossed the window's edge since about the last sweep."""
    async with sessions.begin() as session:
        program = await get_program(session)
        if program.tier_window_days is None:
            return
        edge = now - timedelta(days=program.tier_window_days)
        member_ids = list(
            await session.scalars(
                select(LedgerEntry.member_id)
                .where(
                    LedgerEntry.kind.in_(QUALIFYING_KINDS),
                    LedgerEntry.created_at > edge - lookback,
                    LedgerEntry.created_at <= edge,
                )
                .distinct()
            )
        )
        tiers = await list_tiers(session)
        for member_id in member_ids:
            member = await lock_member(session, member_id, erased_ok=True)
            change = await refresh_tier(session, member, program, tiers, now)
            report.tiers_refreshed += 1
            if change is not None and report.tier_changes is not None:
                report.tier_changes.append(change)
