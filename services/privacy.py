"""Privacy requests (GDPR/CCPA): a member's data as one document, and its erasure.

Erasure is irreversible and keeps the ledger whole: the member's row stays (its entries,
purchases and redemptions still add up to the program's figures and partners' settlements),
but everything that identifies the person is replaced, wherever Laurel keeps it: the member
row (email, display name, birthday, externalId, attributes, referral code), the search text
(PostgreSQL keeps it by trigger), other members' referral entries that named it, and the
audit trail. The caller then tells every process (`Runtime.member_erased`): its tokens are
refused and its live subscriptions end; leaderboards drop it at their next flush.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    Badge,
    Challenge,
    ChallengeCompletion,
    EntryKind,
    EventKind,
    LedgerEntry,
    Member,
    MemberBadge,
    MemberEvent,
    Purchase,
    Redemption,
    Refund,
    Reward,
    Tier,
)
from services import audit
from services.errors import NotFound
from services.events import record_event
from services.gamification import challenges
from services.global_ids import encode_id
from services.ledger.entries import lock_member
from services.member_profile import member_gid
from services.webhooks.catalog import erase_from_webhooks

ERASED_NAME = "Erased member"
ERASED_EMAIL_DOMAIN = "erased.invalid"  # .invalid never resolves (RFC 2606)


def erased_email(member_id: int) -> str:
    return f"erased-{member_id}@{ERASED_EMAIL_DOMAIN}"


def erased_referral_code(member_id: int) -> str:
    # Lower case: codes are upper-cased when given, so this one can never be used.
    return f"erased-{member_id:x}"


def referral_description(name: str) -> str:
    """How a referral entry names the other member (services.ledger.purchases)."""
    return f"Referral bonus: {name}"


async def erase_member(
    session: AsyncSession,
    *,
    member_id: int,
    reason: str | None,
    actor: audit.Actor,
    now: datetime,
) -> Member:
    """Erase the member's personal data; erasing an erased member changes nothing more (and
    is audited again)."""
    member = await lock_member(session, member_id, erased_ok=True)
    target = member_gid(member.id)
    was_erased = member.erased_at is not None
    if not was_erased:
        renamed = await _scrub_referrals(session, member)
        member.email = erased_email(member.id)
        member.display_name = ERASED_NAME
        member.birthday = None
        member.external_id = None
        member.attributes = {}
        member.referral_code = erased_referral_code(member.id)
        member.leaderboard_opt_out = True
        member.erased_at = now
        await session.flush()
        await audit.erase_personal_data(session, target)
        await erase_from_webhooks(session, member.id, renamed)
        # Announced after commit (cached views dropped, leaderboards drop it), and member.erased.
        record_event(session, member.id, EventKind.MEMBER_ERASED, now)
    audit.record(
        session,
        actor=actor,
        operation="eraseMember",
        target_id=target,
        before={"erasedAt": None} if not was_erased else {},
        after=(
            {"erasedAt": audit.jsonable(member.erased_at), "reason": reason}
            if not was_erased
            else {}
        ),
        now=now,
    )
    return member


async def _scrub_referrals(session: AsyncSession, member: Member) -> dict[int, LedgerEntry]:
    """Referral entries of the member's referrer and referees name it by display name:
    renamed, and returned by id."""
    named = referral_description(member.display_name)
    renamed = referral_description("a former member")
    others = select(Member.id).where(
        or_(Member.referred_by_id == member.id, Member.id == (member.referred_by_id or -1))
    )
    entries = await session.scalars(
        select(LedgerEntry).where(
            LedgerEntry.member_id.in_(others),
            LedgerEntry.kind == EntryKind.REFERRAL,
            LedgerEntry.description == named,
        )
    )
    found = {}
    for entry in entries:
        entry.description = renamed
        entry.breakdown = [
            {**line, "label": renamed} if line.get("label") == named else line
            for line in entry.breakdown
        ]
        found[entry.id] = entry
    return found


async def export_member(
    session: AsyncSession, *, member_id: int, actor: audit.Actor, now: datetime
) -> dict[str, Any]:
    """Everything Laurel holds about the member, as one JSON object (audited)."""
    member = await session.get(Member, member_id)
    if member is None:
        raise NotFound("no such member", field=["input", "memberId"])
    document = {
        "exportedAt": now.isoformat(),
        "profile": await _profile(session, member),
        "attributes": dict(member.attributes or {}),
        "balance": {
            "available": member.available,
            "pending": member.pending,
            "lifetimeEarned": member.lifetime_earned,
            "redeemed": member.redeemed,
            "expired": member.expired,
            "qualifyingPoints": member.qualifying_points,
        },
        "ledger": await _ledger(session, member_id),
        "purchases": await _purchases(session, member_id),
        "redemptions": await _redemptions(session, member_id),
        "badges": await _badges(session, member_id),
        "challenges": await _challenges(session, member_id, now),
        "events": await _events(session, member_id),
    }
    audit.record(
        session,
        actor=actor,
        operation="exportMember",
        target_id=member_gid(member_id),
        before=None,
        after=None,
        now=now,
    )
    return document


def _at(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def _profile(session: AsyncSession, member: Member) -> dict[str, Any]:
    tier = await session.get(Tier, member.tier_id)
    return {
        "id": member_gid(member.id),
        "email": member.email,
        "displayName": member.display_name,
        "birthday": member.birthday.isoformat() if member.birthday else None,
        "externalId": member.external_id,
        "joinedAt": _at(member.joined_at),
        "referralCode": member.referral_code,
        "referredBy": member_gid(member.referred_by_id) if member.referred_by_id else None,
        "tier": tier.name if tier is not None else None,
        "status": member.status.value,
        "statusReason": member.status_reason,
        "leaderboardOptOut": member.leaderboard_opt_out,
        "erasedAt": _at(member.erased_at),
    }


async def _ledger(session: AsyncSession, member_id: int) -> list[dict[str, Any]]:
    entries = await session.scalars(
        select(LedgerEntry).where(LedgerEntry.member_id == member_id).order_by(LedgerEntry.id)
    )
    return [
        {
            "id": encode_id("PointsTransaction", e.id),
            "kind": e.kind.value,
            "status": e.status.value,
            "points": e.points,
            "description": e.description,
            "reference": e.reference,
            "createdAt": _at(e.created_at),
            "availableAt": _at(e.available_at),
            "expiresAt": _at(e.expires_at),
            "breakdown": e.breakdown,
        }
        for e in entries
    ]


async def _purchases(session: AsyncSession, member_id: int) -> list[dict[str, Any]]:
    purchases = list(
        await session.scalars(
            select(Purchase).where(Purchase.member_id == member_id).order_by(Purchase.id)
        )
    )
    refunds: dict[int, list[dict[str, Any]]] = {}
    if purchases:
        for refund in await session.scalars(
            select(Refund)
            .where(Refund.purchase_id.in_([p.id for p in purchases]))
            .order_by(Refund.id)
        ):
            refunds.setdefault(refund.purchase_id, []).append(
                {
                    "refundId": refund.refund_id,
                    "amount": str(refund.amount),
                    "at": _at(refund.created_at),
                }
            )
    return [
        {
            "orderId": p.order_id,
            "amount": str(p.amount),
            "occurredAt": _at(p.occurred_at),
            "pointsEarned": p.points_earned,
            "refundedAmount": str(p.refunded_amount),
            "refunds": refunds.get(p.id, []),
        }
        for p in purchases
    ]


async def _redemptions(session: AsyncSession, member_id: int) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(Redemption, Reward.name)
        .join(Reward, Reward.id == Redemption.reward_id)
        .where(Redemption.member_id == member_id)
        .order_by(Redemption.id)
    )
    return [
        {
            "id": encode_id("Redemption", r.id),
            "reward": name,
            "points": r.points,
            "status": r.status.value,
            "code": r.code,
            "receiptNumber": r.receipt_number,
            "createdAt": _at(r.created_at),
            "usedAt": _at(r.used_at),
            "cancelledAt": _at(r.cancelled_at),
        }
        for r, name in rows
    ]


async def _badges(session: AsyncSession, member_id: int) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(Badge.name, MemberBadge.awarded_at)
        .join(Badge, Badge.id == MemberBadge.badge_id)
        .where(MemberBadge.member_id == member_id)
        .order_by(MemberBadge.id)
    )
    return [{"badge": name, "awardedAt": _at(at)} for name, at in rows]


async def _challenges(session: AsyncSession, member_id: int, now: datetime) -> dict[str, Any]:
    completions = await session.execute(
        select(Challenge.name, ChallengeCompletion.period_start, ChallengeCompletion.completed_at)
        .join(Challenge, Challenge.id == ChallengeCompletion.challenge_id)
        .where(ChallengeCompletion.member_id == member_id)
        .order_by(ChallengeCompletion.id)
    )
    running = await challenges.running(session, now)
    states = await challenges.progress(session, member_id, running, now)
    return {
        "completed": [
            {"challenge": name, "periodStart": _at(start), "completedAt": _at(done)}
            for name, start, done in completions
        ],
        "inProgress": [
            {
                "challenge": s.challenge.name,
                "periodStart": _at(s.period_start),
                "progress": s.progress,
                "goal": s.challenge.goal,
            }
            for s in states
        ],
    }


async def _events(session: AsyncSession, member_id: int) -> list[dict[str, Any]]:
    events = await session.scalars(
        select(MemberEvent).where(MemberEvent.member_id == member_id).order_by(MemberEvent.id)
    )
    return [
        {
            "id": e.id,
            "kind": e.kind.value,
            "data": e.data,
            "transaction": encode_id("PointsTransaction", e.entry_id) if e.entry_id else None,
            "createdAt": _at(e.created_at),
        }
        for e in events
    ]
