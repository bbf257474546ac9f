"""Purchases earn points; refunds reverse them in proportion, never more than was earned."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    EntryKind,
    EntryStatus,
    EventKind,
    LedgerEntry,
    Member,
    Program,
    Purchase,
    Refund,
)
from models.records import MemberRecord
from services.catalog import Catalog, current_catalog
from services.errors import Invalid, NotFound
from services.events import record_event
from services.gamification import challenges
from services.ledger.earning import EarnQuote, purchase_amount, quote_purchase
from services.ledger.entries import credit, draw, lock_member, post, settle
from services.ledger.idempotency import claim, record_result
from services.program import active_promotions
from services.targeting import applicable_promotions, segment_ids, segments_containing
from services.tiers import refresh_tier

MAX_REFERENCE_LENGTH = 200
# A purchase may be reported a little ahead of our clock (clock skew), not from the future.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(slots=True)
class LedgerResult:
    """A points-moving operation's result: the entry it (first) wrote, and the member."""

    entry: LedgerEntry
    member: Member
    replayed: bool = False


def reference_key(value: str, field: list[str]) -> str:
    key = value.strip()
    if not key:
        raise Invalid("must not be blank", field=field)
    if len(key) > MAX_REFERENCE_LENGTH:
        raise Invalid(f"must be at most {MAX_REFERENCE_LENGTH} characters", field=field)
    return key


async def replay(session: AsyncSession, entry_id: int | None) -> LedgerResult:
    """The result of an earlier request with the same idempotency key."""
    assert entry_id is not None, "a committed claim always records its entry"
    entry = await session.get(LedgerEntry, entry_id)
    assert entry is not None
    member = await session.get(Member, entry.member_id)
    assert member is not None
    return LedgerResult(entry=entry, member=member, replayed=True)


def quote_for_member(
    catalog: Catalog,
    member: MemberRecord | None,
    amount: Decimal,
    at: datetime,
    *,
    segments: Collection[int] = frozenset(),
) -> EarnQuote:
    """What a purchase of `amount` at `at` earns this member (or an entry-tier member, whom no
    targeted promotion pays); `segments`: the member's segments among the active promotions'
    (`promotion_segments`)."""
    tier = catalog.tier(member.tier_id) if member is not None else catalog.tiers[0]
    promotions = applicable_promotions(
        catalog.active_promotions(at),
        member_id=member.id if member is not None else None,
        segments=segments,
    )
    return quote_purchase(amount, catalog.program, tier, promotions)


async def promotion_segments(
    session: AsyncSession, catalog: Catalog, member_id: int, at: datetime, now: datetime
) -> frozenset[int]:
    """The member's segments among those the promotions active at `at` target, now."""
    ids = segment_ids(catalog.active_promotions(at))
    return await segments_containing(session, member_id, ids, now, rules=catalog.segment_rules)


@dataclass(frozen=True, slots=True)
class PurchaseInput:
    """A recordPurchase request, checked: what both write paths start from."""

    member_id: int
    order_id: str
    amount: Decimal
    occurred_at: datetime | None

    @classmethod
    def check(
        cls,
        *,
        member_id: int,
        order_id: str,
        amount: float,
        occurred_at: datetime | None,
        now: datetime,
    ) -> PurchaseInput:
        order_id = reference_key(order_id, ["input", "orderId"])
        exact_amount = purchase_amount(amount, ["input", "amount"])
        if occurred_at is not None and occurred_at > now + CLOCK_SKEW:
            raise Invalid("occurredAt is in the future", field=["input", "occurredAt"])
        return cls(member_id, order_id, exact_amount, occurred_at)

    def fingerprinted(self) -> dict[str, Any]:
        """What the order id's idempotency claim compares a retry with."""
        return {
            "member": self.member_id,
            "amount": str(self.amount),
            "occurredAt": self.occurred_at.isoformat() if self.occurred_at else None,
        }

    def occurred(self, now: datetime) -> datetime:
        return min(self.occurred_at or now, now)

    def description(self, program: Program) -> str:
        return f"Purchase {self.order_id}: {self.amount} {program.currency}"


async def record_purchase(
    session: AsyncSession,
    *,
    member_id: int,
    order_id: str,
    amount: float,
    now: datetime,
    occurred_at: datetime | None = None,
    actor: str = "system",
    catalog: Catalog | None = None,
) -> LedgerResult:
    purchase = PurchaseInput.check(
        member_id=member_id, order_id=order_id, amount=amount, occurred_at=occurred_at, now=now
    )
    order_id = purchase.order_id
    claimed = await claim(
        session, scope="purchase", key=order_id, request=purchase.fingerprinted(), now=now
    )
    if claimed.first_use is not None:
        # The purchase row, written with the claim, names the entry: no claim update needed.
        first = await session.scalar(select(Purchase.entry_id).where(Purchase.order_id == order_id))
        return await replay(session, first)

    member = await lock_member(session, member_id)
    await settle(session, member, now)
    catalog = await current_catalog(session, catalog, now)
    program, tiers = catalog.program, catalog.tiers
    occurred = purchase.occurred(now)
    covered = catalog.covers(occurred)
    active = (
        catalog.active_promotions(occurred)
        if covered
        else await active_promotions(session, occurred)
    )
    # Segment membership decides points: computed here, in this transaction with the member
    # locked, as of before this purchase (its rules count purchases and the last one's date,
    # so the order that makes a member qualify earns the promotion from the next order on).
    segments = await segments_containing(
        session,
        member.id,
        segment_ids(active),
        now,
        rules=catalog.segment_rules if covered else None,
    )
    promotions = applicable_promotions(active, member_id=member.id, segments=segments)
    if member.last_purchase_at is None or occurred > member.last_purchase_at:
        member.last_purchase_at = occurred
    quote = quote_purchase(purchase.amount, program, catalog.tier(member.tier_id), promotions)
    available_at = occurred + timedelta(days=program.pending_days)
    entry = credit(
        session,
        member,
        program,
        kind=EntryKind.PURCHASE,
        points=quote.points,
        now=now,
        description=purchase.description(program),
        available_at=available_at,
        reference=order_id,
        breakdown=quote.breakdown(),
        actor=actor,
    )
    await session.flush()
    session.add(
        Purchase(
            order_id=order_id,
            member_id=member.id,
            amount=purchase.amount,
            occurred_at=occurred,
            entry_id=entry.id,
            points_earned=entry.points,  # 0 when withheld: refunds reverse what was earned
            refunded_amount=Decimal(0),
            points_reversed=0,
        )
    )
    if member.referred_by_id is not None and not member.referral_rewarded:
        await _reward_referral(session, member, catalog, entry, now)
    if catalog.gamified_at(now):
        await session.flush()  # progress is counted from the rows written above
        await challenges.after_change(session, member, program, now)
    await refresh_tier(session, member, program, tiers, now)
    await session.flush()
    return LedgerResult(entry=entry, member=member)


async def _reward_referral(
    session: AsyncSession, member: Member, catalog: Catalog, purchase: LedgerEntry, now: datetime
) -> None:
    """Both sides earn the referral bonus on the referred member's first purchase, pending
    as long as that purchase is (a refunded first order should not pay out at once)."""
    member.referral_rewarded = True
    member.referral_rewarded_at = now
    program = catalog.program
    counted = catalog.gamified_at(now)
    if member.referred_by_id is None:
        return
    # Lock order is always referred member, then referrer: referrers enrolled earlier, so no
    # cycle. Locked even with no bonus to pay: its referral.completed event, like any of a
    # member's events, is written under its lock (so its events commit in id order).
    referrer = await lock_member(session, member.referred_by_id, erased_ok=True)
    await settle(session, referrer, now)
    record_event(session, referrer.id, EventKind.REFERRAL_COMPLETED, now, {"referred": member.id})
    if program.referral_bonus > 0:
        for who, other in ((member, referrer), (referrer, member)):
            credit(
                session,
                who,
                program,
                kind=EntryKind.REFERRAL,
                points=program.referral_bonus,
                now=now,
                description=f"Referral bonus: {other.display_name}",
                available_at=purchase.available_at,
                reference=purchase.reference,
            )
    if counted:  # the referral (and its bonus) count for the referrer's goals now
        await session.flush()
        await challenges.after_change(session, referrer, program, now)
    await refresh_tier(session, referrer, program, catalog.tiers, now)


async def refund_purchase(
    session: AsyncSession,
    *,
    order_id: str,
    refund_id: str,
    amount: float | None,
    now: datetime,
    actor: str = "system",
    catalog: Catalog | None = None,
) -> LedgerResult:
    order_id = reference_key(order_id, ["input", "orderId"])
    refund_id = reference_key(refund_id, ["input", "refundId"])
    requested = purchase_amount(amount, ["input", "amount"]) if amount is not None else None
    request = {"orderId": order_id, "amount": None if requested is None else str(requested)}
    claimed = await claim(session, scope="refund", key=refund_id, request=request, now=now)
    if claimed.first_use is not None:
        return await replay(session, claimed.first_use.entry_id)

    member_id = await session.scalar(
        select(Purchase.member_id).where(Purchase.order_id == order_id)
    )
    if member_id is None:
        raise NotFound("no purchase with this orderId", field=["input", "orderId"])
    member = await lock_member(session, member_id, erased_ok=True)
    await settle(session, member, now)
    # Read the purchase only under the member lock: concurrent refunds of it queue there.
    purchase = await session.scalar(
        select(Purchase)
        .where(Purchase.order_id == order_id)
        .execution_options(populate_existing=True)
    )
    assert purchase is not None
    catalog = await current_catalog(session, catalog, now)
    program = catalog.program

    refundable = purchase.amount - purchase.refunded_amount
    if refundable <= 0 and purchase.amount > 0:
        raise Invalid("this order is already fully refunded", field=["input", "orderId"])
    refunded_now = refundable if requested is None else min(requested, refundable)
    refunded_total = purchase.refunded_amount + refunded_now
    if purchase.amount == 0 or refunded_total >= purchase.amount:
        target = purchase.points_earned
    else:
        target = math.floor(purchase.points_earned * refunded_total / purchase.amount)
    to_reverse = max(target - purchase.points_reversed, 0)

    lot = await session.get(LedgerEntry, purchase.entry_id, populate_existing=True)
    assert lot is not None
    if lot.status is EntryStatus.PENDING:
        # Still inside the return window: cancel pending points, the available ones stay.
        status, available_at = EntryStatus.PENDING, lot.available_at
        recovered = min(to_reverse, lot.remaining)
        await draw(session, member, recovered, status=EntryStatus.PENDING, first_lot_id=lot.id)
    else:
        status, available_at = EntryStatus.POSTED, None
        recovered = min(to_reverse, member.available)
        await draw(session, member, recovered, status=EntryStatus.POSTED, first_lot_id=lot.id)
    shortfall = to_reverse - recovered
    breakdown = [
        {
            "label": f"Refund of {refunded_now} {program.currency} on order {order_id}",
            "points": -to_reverse,
        }
    ]
    if shortfall:
        breakdown.append({"label": "Already spent, not recovered", "points": shortfall})
    entry = post(
        session,
        member,
        kind=EntryKind.REVERSAL,
        points=-recovered,
        now=now,
        description=f"Refund {refund_id} of order {order_id}",
        status=status,
        reference=order_id,
        available_at=available_at,
        breakdown=breakdown,
        actor=actor,
        reverses_entry_id=lot.id,
    )
    purchase.refunded_amount = refunded_total
    purchase.points_reversed = purchase.points_reversed + to_reverse
    await session.flush()
    session.add(
        Refund(
            refund_id=refund_id,
            purchase_id=purchase.id,
            requested_amount=requested,
            amount=refunded_now,
            entry_id=entry.id,
            created_at=now,
        )
    )
    await refresh_tier(session, member, program, catalog.tiers, now)
    await record_result(session, claimed, entry_id=entry.id)
    await session.flush()
    return LedgerResult(entry=entry, member=member)
