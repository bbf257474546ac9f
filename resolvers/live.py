"""Subscriptions: the calling member's committed events, replayed from a cursor, then live.

The stream subscribes to the bus *before* it reads, then reads the outbox after its cursor
every time the doorbell rings. One member's events commit in id order (each change holds the
member's row lock), so reading "after my cursor" neither skips nor repeats one, whatever order
hints arrive in: the seam between replay and live has no gap and no duplicate.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any, cast

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

import models
from schema.context import Context, Info, Role
from schema.exceptions import BadUserInput, Unauthenticated
from schema.ids import decode_cursor, encode_cursor
from schema.types.events import MemberEvent, PointsUpdate, TierChanged
from schema.types.gamification import Badge, BadgeAwarded, Challenge, ChallengeCompleted
from schema.types.ledger import PointsTransaction
from schema.types.member import Member, PointsBalance
from schema.types.program import Tier
from services.errors import DomainError

PAGE = 100  # events read per round trip while catching up

_events = models.MemberEvent.__table__
_entries = models.LedgerEntry.__table__
_members = models.Member.__table__
_LIVE = sorted(kind.value for kind in models.LIVE_KINDS)


def live_member(context: Context) -> int:
    """The member whose events `context`'s caller may follow (Unauthenticated: none)."""
    viewer = context.viewer
    if viewer.role is not Role.MEMBER or viewer.member_id is None:
        raise Unauthenticated("live updates need a member token in connection_init")
    if context.runtime.revocations.is_erased(viewer.member_id):
        raise Unauthenticated("member token refused: this member's data was erased")
    return viewer.member_id


def points_updated(info: Info) -> AsyncGenerator[PointsUpdate, None]:
    """Each balance change of the caller, once, after its commit."""
    # The stream itself, not a generator around it: a waiting subscriber keeps one frame.
    return cast(AsyncGenerator[PointsUpdate, None], _stream(info, None, points_only=True))


def member_events(info: Info, after: str | None = None) -> AsyncGenerator[MemberEvent, None]:
    """The caller's events in commit order; with `after`, every event since that cursor first."""
    return cast(AsyncGenerator[MemberEvent, None], _stream(info, after, points_only=False))


async def _stream(
    info: Info, cursor: str | None, *, points_only: bool
) -> AsyncGenerator[MemberEvent | PointsUpdate, None]:
    """The caller's events after `cursor` (None: from now on), or only their balance changes.
    The checks run on the first read, as the stream starts (errors come as its results)."""
    member_id = live_member(info.context)
    try:
        after = decode_cursor(cursor, ["after"]) if cursor is not None else None
    except DomainError as error:
        raise BadUserInput("`after` is not a cursor of memberEvents") from error
    ctx = info.context
    bus = ctx.runtime.bus
    bell = bus.subscribe(member_id)  # first: what commits from now on rings it
    engine = ctx.runtime.read_engine
    try:
        if after is None:
            after = await last_event_id(engine, member_id)
        while not ctx.runtime.revocations.is_erased(member_id):  # erasure ends the stream
            rows, entries, member = await read_after(engine, member_id, after)
            if member is not None:
                # Each delivery reads afresh: no answer cached for an earlier event.
                ctx.renew_loaders()
                for row in rows:
                    event = await _event(info, row, entries, member)
                    if not points_only:
                        yield event
                    elif isinstance(event.payload, PointsUpdate):
                        yield event.payload
                    after = row.id
                del row, event
                if len(rows) == PAGE:
                    continue  # catching up: read on without waiting
            del rows, entries, member  # a waiting subscriber holds nothing but its cursor
            await bell.wait()
    finally:
        bus.unsubscribe(member_id, bell)


async def last_event_id(engine: AsyncEngine, member_id: int) -> int:
    """The id of the member's last event (0: none). A function of its own, so that no
    connection stays in the waiting stream's frame (~2.5 KiB a subscriber)."""
    async with engine.connect() as connection:
        last = await connection.scalar(
            select(func.coalesce(func.max(_events.c.id), 0)).where(_events.c.member_id == member_id)
        )
    return int(last or 0)


async def read_after(
    engine: AsyncEngine, member_id: int, after: int
) -> tuple[list[Row[Any]], dict[int, Row[Any]], Row[Any] | None]:
    """Up to PAGE of the member's events after `after`, their entries, and the member (None
    when there are no such events)."""
    async with engine.connect() as connection:
        rows = list(
            (
                await connection.execute(
                    select(_events)
                    .where(
                        _events.c.member_id == member_id,
                        _events.c.id > after,
                        _events.c.kind.in_(_LIVE),  # webhook-only kinds are not shown
                    )
                    .order_by(_events.c.id)
                    .limit(PAGE)
                )
            ).all()
        )
        if not rows:
            return rows, {}, None
        entries = await _entries_of(connection, rows)
        member = (
            await connection.execute(select(_members).where(_members.c.id == member_id))
        ).one()
    return rows, entries, member


async def _entries_of(connection: Any, rows: Sequence[Row[Any]]) -> dict[int, Row[Any]]:
    ids = [row.entry_id for row in rows if row.entry_id is not None]
    if not ids:
        return {}
    found = await connection.execute(select(_entries).where(_entries.c.id.in_(ids)))
    return {entry.id: entry for entry in found}


async def _event(
    info: Info, row: Row[Any], entries: dict[int, Row[Any]], member: Row[Any]
) -> MemberEvent:
    payload: PointsUpdate | TierChanged | BadgeAwarded | ChallengeCompleted
    if row.kind is models.EventKind.POINTS_UPDATED:
        payload = points_update_of(row, entries, member)
    elif row.kind is models.EventKind.TIER_CHANGED:
        # Either may be a tier retired since: history still names it.
        payload = TierChanged(
            from_=await _tier(info, row.data["from"]), to=await _tier(info, row.data["to"])
        )
    elif row.kind is models.EventKind.BADGE_AWARDED:
        badge = await info.context.loaders.badges.load(row.data["badge"])
        assert badge is not None, "badges are never deleted"
        payload = BadgeAwarded(badge=Badge.from_row(badge), awarded_at=row.created_at)
    else:
        async with info.context.runtime.read_sessions() as session:
            challenge = await session.get(models.Challenge, row.data["challenge"])
        assert challenge is not None, "challenges are never deleted"
        payload = ChallengeCompleted(
            challenge=Challenge.from_row(challenge), completed_at=row.created_at
        )
    return MemberEvent(cursor=encode_cursor(row.id), occurred_at=row.created_at, payload=payload)


def points_update_of(row: Row[Any], entries: dict[int, Row[Any]], member: Row[Any]) -> PointsUpdate:
    """The `pointsUpdated` payload of a POINTS_UPDATED event `row` (`read_after`'s rows)."""
    data = row.data
    return PointsUpdate(
        member=Member.from_row(member),
        transaction=PointsTransaction.from_row(entries[row.entry_id]),
        balance=PointsBalance(
            available=data["available"],
            pending=data["pending"],
            lifetime_earned=data["lifetimeEarned"],
            redeemed=data["redeemed"],
            expired=data["expired"],
            member_pk=row.member_id,
        ),
    )


async def _tier(info: Info, tier_id: int) -> Tier:
    """The tier, live or retired, ranked among the live ones."""
    return Tier.of(await info.context.loaders.catalog(tier_id=tier_id), tier_id)
