"""Posting entries, drawing lots, and settling a member's pending and expiring points.

The rules every write follows: lock the member row first (so balances and lots change one
writer at a time), settle what is due, then post entries through `post`, which keeps the
member's cached balances equal to the sums of its entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    EARNING_KINDS,
    QUALIFYING_KINDS,
    EntryKind,
    EntryStatus,
    EventKind,
    LedgerEntry,
    Member,
    MemberStatus,
    Program,
)
from models.records import Balances, MemberRecord
from services.errors import InsufficientPoints, Invalid, LimitReached, NotFound
from services.events import balances, record_event, record_points
from services.leaderboards.periods import Period, period_key

# Balances travel as GraphQL Int (32-bit): stay well inside it, and refuse what is beyond.
MAX_ENTRY_POINTS = 100_000_000
MAX_BALANCE = 2_000_000_000


class Drawn(NamedTuple):
    """Points taken from lots that expire at `expires_at` (None: never)."""

    expires_at: datetime | None
    points: int


# The breakdown line of points a suspended member did not earn.
WITHHELD = "Withheld: the member is suspended"

# Lots read at first by a spend (then 4x as many each time more are needed).
DRAW_BATCH = 8

# Entries that can never be spent from, whatever their sign.
_NOT_LOTS = frozenset({EntryKind.REVERSAL, EntryKind.EXPIRATION})


async def lock_member(
    session: AsyncSession,
    member_id: int,
    *,
    erased_ok: bool = False,
    field: Sequence[str] = ("input", "memberId"),
) -> Member:
    """Load the member for writing: the row lock serializes every balance change. An erased
    member is not found, unless the caller only keeps its ledger going (`erased_ok`: refunds,
    cancellations, settling, sweeps)."""
    stmt = (
        select(Member)
        .where(Member.id == member_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    member = await session.scalar(stmt)
    if member is None or (member.erased_at is not None and not erased_ok):
        raise NotFound("no such member", field=field)
    return member


def earns(member: MemberRecord) -> bool:
    """Whether the member earns points: not while suspended, never once erased."""
    return member.status is MemberStatus.ACTIVE and member.erased_at is None


def earned_of(
    member: MemberRecord, kind: EntryKind, points: int, breakdown: Sequence[dict[str, Any]]
) -> tuple[int, list[dict[str, Any]]]:
    """What the member earns of `points` (and the breakdown that says so): all of them, or,
    suspended or erased, none of an earning, the breakdown adding what was withheld."""
    if not earns(member) and kind in EARNING_KINDS and points > 0:
        return 0, [*breakdown, {"label": WITHHELD, "points": -points}]
    return points, list(breakdown)


def post(
    session: AsyncSession,
    member: Member,
    *,
    kind: EntryKind,
    points: int,
    now: datetime,
    description: str,
    status: EntryStatus = EntryStatus.POSTED,
    reference: str | None = None,
    available_at: datetime | None = None,
    expires_at: datetime | None = None,
    breakdown: Sequence[dict[str, Any]] = (),
    actor: str = "system",
    reverses_entry_id: int | None = None,
) -> LedgerEntry:
    """Append one entry and apply it to the member's cached balances."""
    check_posting(member, points)
    is_lot = opens_lot(kind, status, points)
    entry = LedgerEntry(
        member_id=member.id,
        kind=kind,
        status=status,
        points=points,
        remaining=points if is_lot else 0,
        description=description[:500],
        reference=reference,
        created_at=now,
        available_at=available_at,
        expires_at=expires_at,
        breakdown=list(breakdown),
        actor=actor,
        reverses_entry_id=reverses_entry_id,
    )
    session.add(entry)
    apply_posting(
        member,
        kind=kind,
        status=status,
        points=points,
        now=now,
        available_at=available_at,
        expires_at=expires_at if is_lot else None,
    )
    record_points(session, member, entry, now)
    return entry


def check_posting(member: Balances, points: int) -> None:
    """Refuse an entry beyond what one entry, or a balance, may hold."""
    if abs(points) > MAX_ENTRY_POINTS:
        raise Invalid(f"one transaction moves at most {MAX_ENTRY_POINTS:,} points")
    if points > 0 and member.available + member.pending + points > MAX_BALANCE:
        raise LimitReached(f"a balance holds at most {MAX_BALANCE:,} points")


def opens_lot(kind: EntryKind, status: EntryStatus, points: int) -> bool:
    """Whether the entry is a lot later spends draw from (its `remaining` starts at `points`)."""
    return points > 0 and kind not in _NOT_LOTS and status is not EntryStatus.VOIDED


def apply_posting(
    member: Balances,
    *,
    kind: EntryKind,
    status: EntryStatus,
    points: int,
    now: datetime,
    available_at: datetime | None,
    expires_at: datetime | None,
) -> None:
    """Apply a new entry, written at `now`, to the cached balances (`expires_at` only when it
    opens a lot), the leaderboards' scores among them (all time, this month, this week)."""
    if status is EntryStatus.PENDING:
        member.pending += points
        assert available_at is not None, "a pending entry needs the moment it becomes available"
        _schedule_settlement(member, available_at)
    elif status is EntryStatus.POSTED:
        member.available += points
        _count_posted(member, kind, points)
    if kind in QUALIFYING_KINDS and status is not EntryStatus.VOIDED:
        member.qualifying_points += points
        member.earned_points += points
        _earn_in_periods(member, points, now)
    if expires_at is not None:
        _schedule_settlement(member, expires_at)


def credit_terms(
    program: Program, available_at: datetime | None, now: datetime
) -> tuple[EntryStatus, datetime, datetime | None]:
    """(status, available_at, expires_at) of points earned now that become available at
    `available_at` (never before now), expiring `expiryDays` after."""
    available_at = max(available_at or now, now)
    expires_at = available_at + timedelta(days=program.expiry_days) if program.expiry_days else None
    return (
        EntryStatus.PENDING if available_at > now else EntryStatus.POSTED,
        available_at,
        expires_at,
    )


def credit(
    session: AsyncSession,
    member: Member,
    program: Program,
    *,
    kind: EntryKind,
    points: int,
    now: datetime,
    description: str,
    available_at: datetime | None = None,
    reference: str | None = None,
    breakdown: Sequence[dict[str, Any]] = (),
    actor: str = "system",
) -> LedgerEntry:
    """Earn points as a new lot: pending until `available_at`, expiring `expiryDays` after it.

    A suspended member earns nothing: the entry is still written (the purchase, activity or
    celebration is on record), for 0 points, with a breakdown that says what was withheld.
    Admin adjustments are not earnings and are never withheld."""
    points, breakdown = earned_of(
        member, kind, points, breakdown or [{"label": description, "points": points}]
    )
    status, available_at, expires_at = credit_terms(program, available_at, now)
    return post(
        session,
        member,
        kind=kind,
        points=points,
        now=now,
        description=description,
        status=status,
        reference=reference,
        available_at=available_at,
        expires_at=expires_at,
        breakdown=breakdown,
        actor=actor,
    )


async def debit(
    session: AsyncSession,
    member: Member,
    *,
    kind: EntryKind,
    points: int,
    now: datetime,
    description: str,
    reference: str | None = None,
    breakdown: Sequence[dict[str, Any]] = (),
    actor: str = "system",
) -> LedgerEntry:
    """Spend `points` (> 0) of the available balance, soonest-expiring lots first."""
    entry, _ = await spend(
        session,
        member,
        kind=kind,
        points=points,
        now=now,
        description=description,
        reference=reference,
        breakdown=breakdown,
        actor=actor,
    )
    return entry


async def spend(
    session: AsyncSession,
    member: Member,
    *,
    kind: EntryKind,
    points: int,
    now: datetime,
    description: str,
    reference: str | None = None,
    breakdown: Sequence[dict[str, Any]] = (),
    actor: str = "system",
) -> tuple[LedgerEntry, list[Drawn]]:
    """`debit`, also saying which expiries the points were drawn from."""
    assert points > 0
    if member.available < points:
        raise InsufficientPoints(
            f"{points} points needed, {member.available} available", field=["input", "points"]
        )
    drawn = await draw(session, member, points, status=EntryStatus.POSTED)
    entry = post(
        session,
        member,
        kind=kind,
        points=-points,
        now=now,
        description=description,
        reference=reference,
        breakdown=breakdown or [{"label": description, "points": -points}],
        actor=actor,
    )
    return entry, drawn


async def draw(
    session: AsyncSession,
    member: Member,
    points: int,
    *,
    status: EntryStatus,
    first_lot_id: int | None = None,
) -> list[Drawn]:
    """Take `points` from the member's open lots of `status`: `first_lot_id` first, then the
    soonest-expiring (never-expiring last), oldest first among equals. Returns how much was
    taken from each expiry, in the order taken."""
    drawn: list[Drawn] = []
    if points <= 0:
        return drawn
    stmt = (
        select(LedgerEntry)
        .where(
            LedgerEntry.member_id == member.id,
            LedgerEntry.status == status,
            LedgerEntry.remaining > 0,
        )
        .order_by(
            case((LedgerEntry.id == (first_lot_id or 0), 0), else_=1),
            LedgerEntry.expires_at.is_(None),
            LedgerEntry.expires_at,
            LedgerEntry.id,
        )
        .execution_options(populate_existing=True)
    )
    left = points
    # A long-standing member has hundreds of open lots and a spend usually needs one or two:
    # read them a few at a time (the rows do not change in the database until the flush, so
    # the order, and so the offsets, hold).
    offset, batch = 0, DRAW_BATCH
    while True:
        lots = list(await session.scalars(stmt.limit(batch).offset(offset)))
        left = take_from(lots, left, drawn)
        if left == 0:
            return drawn
        if len(lots) < batch:
            break
        offset, batch = offset + batch, batch * 4
    raise AssertionError(f"member {member.id}: lots hold {points - left} of {points} points drawn")


class OpenLot(Protocol):
    remaining: int

    @property
    def expires_at(self) -> datetime | None: ...


def take_from(lots: Iterable[OpenLot], points: int, drawn: list[Drawn]) -> int:
    """Take up to `points` from `lots` in their order, lowering their `remaining`, and note in
    `drawn` how much came from each expiry (in the order taken). Returns what is left to take."""
    left = points
    for lot in lots:
        if left == 0:
            break
        take = min(left, lot.remaining)
        lot.remaining -= take
        left -= take
        if drawn and drawn[-1].expires_at == lot.expires_at:
            drawn[-1] = Drawn(lot.expires_at, drawn[-1].points + take)
        else:
            drawn.append(Drawn(lot.expires_at, take))
    return left


async def settle(session: AsyncSession, member: Member, now: datetime) -> None:
    """Activate pending entries and expire lots that are due, for one locked member."""
    if member.next_settlement_at is None or member.next_settlement_at > now:
        return
    due = await session.scalars(
        select(LedgerEntry)
        .where(
            LedgerEntry.member_id == member.id,
            LedgerEntry.status == EntryStatus.PENDING,
            LedgerEntry.available_at <= now,
        )
        .order_by(LedgerEntry.id)
        .execution_options(populate_existing=True)
    )
    for entry in due:
        entry.status = EntryStatus.POSTED
        member.pending -= entry.points
        member.available += entry.points
        _count_posted(member, entry.kind, entry.points)
        if entry.points > 0:
            record_event(
                session,
                member.id,
                EventKind.POINTS_ACTIVATED,
                now,
                {"entry": entry.id, "balance": balances(member)},
            )
    await session.flush()  # lots activated just now may be due to expire as well

    expiring = await session.scalars(
        select(LedgerEntry)
        .where(
            LedgerEntry.member_id == member.id,
            LedgerEntry.status == EntryStatus.POSTED,
            LedgerEntry.remaining > 0,
            LedgerEntry.expires_at <= now,
        )
        .order_by(LedgerEntry.expires_at, LedgerEntry.id)
        .execution_options(populate_existing=True)
    )
    for lot in expiring:
        assert lot.expires_at is not None
        left = lot.remaining
        lot.remaining = 0
        post(
            session,
            member,
            kind=EntryKind.EXPIRATION,
            points=-left,
            now=now,
            description=f"{left} points expired on {lot.expires_at:%Y-%m-%d}",
            reference=lot.reference,
            breakdown=[{"label": f"Unspent from: {lot.description}", "points": -left}],
            reverses_entry_id=lot.id,
        )
    await session.flush()
    member.next_settlement_at = await _next_settlement(session, member.id)


def _count_posted(member: Balances, kind: EntryKind, points: int) -> None:
    if kind in QUALIFYING_KINDS:
        member.lifetime_earned += points
    elif kind is EntryKind.REDEMPTION:
        member.redeemed -= points
    elif kind is EntryKind.EXPIRATION:
        member.expired -= points


def _earn_in_periods(member: Balances, points: int, now: datetime) -> None:
    """Add earned points to the member's month and week (the monthly and weekly boards'
    scores): a period after the one kept starts again from these points. An entry of a
    period before the one kept (a clock set back) changes neither."""
    month = period_key(Period.MONTHLY, now)
    if month == member.month_key:
        member.month_points += points
    elif month > member.month_key:
        member.month_key, member.month_points = month, points
    week = period_key(Period.WEEKLY, now)
    if week == member.week_key:
        member.week_points += points
    elif week > member.week_key:
        member.week_key, member.week_points = week, points


def _schedule_settlement(member: Balances, moment: datetime) -> None:
    if member.next_settlement_at is None or moment < member.next_settlement_at:
        member.next_settlement_at = moment


async def _next_settlement(session: AsyncSession, member_id: int) -> datetime | None:
    next_activation = (
        select(func.min(LedgerEntry.available_at))
        .where(LedgerEntry.member_id == member_id, LedgerEntry.status == EntryStatus.PENDING)
        .scalar_subquery()
    )
    next_expiry = (
        select(func.min(LedgerEntry.expires_at))
        .where(
            LedgerEntry.member_id == member_id,
            LedgerEntry.remaining > 0,
            LedgerEntry.status.in_([EntryStatus.POSTED, EntryStatus.PENDING]),
        )
        .scalar_subquery()
    )
    row = (await session.execute(select(next_activation, next_expiry))).one()
    moments = [m for m in row if m is not None]
    return min(moments) if moments else None
