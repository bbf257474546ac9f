"""Member events, written into the unit of work, and announced once it commits.

`record_points` and `record_tier_change` add a `MemberEvent` row to the session, in the same
transaction as the change. The session remembers which members it touched; when (and only
when) it commits, the `after_commit` hook hands them to the notifier the session factory was
built with (see `notifying`): the process's bus, which rings the members' subscribers and
publishes to other processes. Nothing here waits for Redis or can fail the money path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from models import EventKind, LedgerEntry, Member, MemberEvent
from models.records import Balances

Notifier = Callable[[frozenset[int]], None]

_CHANGED = "laurel.changed_members"
_NOTIFY = "laurel.notify"


def notifying(notify: Notifier) -> dict[str, Any]:
    """The `info` of a session factory whose commits are announced to `notify`."""
    return {_NOTIFY: notify}


def balances(member: Balances) -> dict[str, int]:
    return {
        "available": member.available,
        "pending": member.pending,
        "lifetimeEarned": member.lifetime_earned,
        "redeemed": member.redeemed,
        "expired": member.expired,
    }


def record_points(session: AsyncSession, member: Member, entry: LedgerEntry, now: datetime) -> None:
    """A POINTS_UPDATED event for `entry`, with the member's balances right after it."""
    session.add(
        MemberEvent(
            member_id=member.id,
            kind=EventKind.POINTS_UPDATED,
            entry=entry,
            data=balances(member),
            created_at=now,
        )
    )
    touched(session, [member.id])


def record_tier_change(
    session: AsyncSession, member_id: int, from_tier: int, to_tier: int, now: datetime
) -> None:
    session.add(
        MemberEvent(
            member_id=member_id,
            kind=EventKind.TIER_CHANGED,
            data={"from": from_tier, "to": to_tier},
            created_at=now,
        )
    )
    touched(session, [member_id])


def record_badge_awarded(
    session: AsyncSession, member_id: int, badge_id: int, now: datetime
) -> None:
    session.add(
        MemberEvent(
            member_id=member_id,
            kind=EventKind.BADGE_AWARDED,
            data={"badge": badge_id},
            created_at=now,
        )
    )
    touched(session, [member_id])


def record_challenge_completed(
    session: AsyncSession, member_id: int, challenge_id: int, now: datetime
) -> None:
    session.add(
        MemberEvent(
            member_id=member_id,
            kind=EventKind.CHALLENGE_COMPLETED,
            data={"challenge": challenge_id},
            created_at=now,
        )
    )
    touched(session, [member_id])


def record_event(
    session: AsyncSession,
    member_id: int,
    kind: EventKind,
    now: datetime,
    data: dict[str, Any] | None = None,
) -> None:
    """A member event of a kind that only webhooks read (member.*, points.activated,
    points.expiring, redemption.*, referral.completed): `LIVE_KINDS` are written above."""
    session.add(MemberEvent(member_id=member_id, kind=kind, data=data or {}, created_at=now))
    touched(session, [member_id])


def touched(session: AsyncSession | Session, member_ids: Iterable[int]) -> None:
    """Announce these members after commit (their events were written by other means)."""
    changed: set[int] = session.info.setdefault(_CHANGED, set())
    changed.update(member_ids)


@event.listens_for(Session, "after_commit")
def _announce(session: Session) -> None:
    changed = session.info.pop(_CHANGED, None)
    notify = session.info.get(_NOTIFY)
    if changed and notify is not None:
        notify(frozenset(changed))


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_CHANGED, None)
