"""Purchases earn points; refunds reverse them in proportion, never more than was earned."""

from __future__ import annotations

import copy
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    EarningRule,
    EntryKind,
    EntryStatus,
    EventKind,
    LedgerEntry,
    Member,
    Program,
    Promotion,
    Purchase,
    Refund,
    Tier,
)
from models.records import MemberRecord
from services import earning_rules
from services.catalog import Catalog, current_catalog
from services.currencies import currency_code
from services.errors import Invalid, NotFound
from services.events import record_event
from services.gamification import challenges
from services.ledger.earning import (
    CENT,
    Component,
    EarnQuote,
    LineRequest,
    PurchaseLine,
    check_lines,
    purchase_amount,
    quote_purchase,
)
from services.ledger.entries import credit, draw, earned_of, lock_member, post, settle
from services.ledger.idempotency import claim, record_result
from services.program import active_promotions
from services.segments import segments_containing
from services.targeting import admitted, applicable_promotions, segment_ids
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


@dataclass(frozen=True, slots=True)
class Order:
    """What an order earns on: its amount, lines and currency, checked."""

    amount: Decimal  # in `currency`
    lines: tuple[PurchaseLine, ...] | None = None
    currency: str | None = None  # null: the program's

    @classmethod
    def check(
        cls,
        amount: float,
        lines: Sequence[LineRequest] | None,
        currency: str | None,
        field: list[str],
    ) -> Order:
        exact = purchase_amount(amount, [*field, "amount"])
        code = currency_code(currency, [*field, "currency"]) if currency is not None else None
        checked = check_lines(lines, exact, [*field, "lines"]) if lines is not None else None
        return cls(exact, checked, code)

    def quote(
        self,
        catalog: Catalog,
        *,
        tier: Tier,
        promotions: Sequence[Promotion],
        rules: Sequence[EarningRule],
        first_purchase: bool,
    ) -> EarnQuote:
        """What the order earns (unknown currency: INVALID on ["input", "currency"])."""
        return quote_purchase(
            self.amount,
            catalog.program,
            tier,
            promotions,
            lines=self.lines,
            rules=rules,
            currency=self.currency,
            rate=catalog.rate_of(self.currency),
            first_purchase=first_purchase,
        )

    def fingerprinted(self) -> dict[str, Any]:
        """The parts a retry must repeat (absent when not given: plain orders keep the
        fingerprint they always had)."""
        extra: dict[str, Any] = {}
        if self.lines is not None:
            extra["lines"] = [line.fingerprinted() for line in self.lines]
        if self.currency is not None:
            extra["currency"] = self.currency
        return extra


def recorded_lines(quote: EarnQuote, points: int) -> dict[str, Any] | None:
    """What the purchase row keeps of the lines (None without): each line's id, quantity,
    points and amount (program currency), and the bonus. Points withheld (suspended member,
    `points` 0) are kept as 0: refunds reverse what was earned."""
    if not quote.lines:
        return None
    kept = points == quote.points
    return {
        "lines": [
            {
                "id": line.line_id,
                "quantity": line.quantity,
                "points": line.points if kept else 0,
                "amount": str(line.amount),
                "refunded": 0,
                "reversed": 0,
            }
            for line in quote.lines
        ],
        "bonus": quote.bonus if kept else 0,
        "bonusReversed": 0,
    }


def program_amount(order: Order, catalog: Catalog) -> Decimal:
    """The order's amount in the program currency, to the cent (what reports sum)."""
    if order.currency is None:
        return order.amount
    return (order.amount * catalog.rate_of(order.currency)).quantize(CENT, ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class Targeting:
    """What a member earns on at `occurred`: the promotions that pay it and the earning rules
    that apply to it, segment membership decided exactly, now, in one statement for both."""

    promotions: list[Promotion]
    rules: list[EarningRule]

    @classmethod
    async def decide(
        cls,
        session: AsyncSession,
        catalog: Catalog,
        member_id: int | None,
        occurred: datetime,
        now: datetime,
    ) -> Targeting:
        covered = catalog.covers(occurred)
        active = (
            catalog.active_promotions(occurred)
            if covered
            else await active_promotions(session, occurred)
        )
        rules = (
            catalog.active_earning_rules(occurred)
            if covered
            else await earning_rules.active_rules(session, occurred)
        )
        inside: Collection[int] = frozenset()
        if member_id is not None:
            inside = await segments_containing(
                session,
                member_id,
                segment_ids([*active, *rules]),
                now,
                rules=catalog.segment_rules if covered else None,
            )
        return cls(
            promotions=applicable_promotions(active, member_id=member_id, segments=inside),
            rules=admitted(rules, inside),
        )


async def preview_order(
    session: AsyncSession,
    catalog: Catalog,
    member: MemberRecord | None,
    order: Order,
    now: datetime,
) -> EarnQuote:
    """What recordPurchase of `order` now would earn this member, with nothing written. With
    no member: an entry-tier member's earn, without segment rules or first-purchase bonus."""
    tier = catalog.tier(member.tier_id) if member is not None else catalog.tiers[0]
    decided = await Targeting.decide(
        session, catalog, member.id if member is not None else None, now, now
    )
    quote = order.quote(
        catalog,
        tier=tier,
        promotions=decided.promotions,
        rules=decided.rules,
        first_purchase=member is not None and member.last_purchase_at is None,
    )
    if member is None:
        return quote
    points, breakdown = earned_of(member, EntryKind.PURCHASE, quote.points, quote.breakdown())
    if points == quote.points:
        return quote
    components = tuple(Component(c["label"], c["points"]) for c in breakdown)
    return replace(quote, points=points, components=components)


@dataclass(frozen=True, slots=True)
class PurchaseInput:
    """A recordPurchase request, checked: what both write paths start from."""

    member_id: int
    order_id: str
    amount: Decimal
    occurred_at: datetime | None
    order: Order | None = None  # None: a plain order of `amount` in the program currency

    @property
    def terms(self) -> Order:
        return self.order if self.order is not None else Order(self.amount)

    @classmethod
    def check(
        cls,
        *,
        member_id: int,
        order_id: str,
        amount: float,
        occurred_at: datetime | None,
        now: datetime,
        lines: Sequence[LineRequest] | None = None,
        currency: str | None = None,
    ) -> PurchaseInput:
        order_id = reference_key(order_id, ["input", "orderId"])
        order = Order.check(amount, lines, currency, ["input"])
        if occurred_at is not None and occurred_at > now + CLOCK_SKEW:
            raise Invalid("occurredAt is in the future", field=["input", "occurredAt"])
        plain = order.lines is None and order.currency is None
        return cls(member_id, order_id, order.amount, occurred_at, None if plain else order)

    def fingerprinted(self) -> dict[str, Any]:
        """What the order id's idempotency claim compares a retry with."""
        return {
            "member": self.member_id,
            "amount": str(self.amount),
            "occurredAt": self.occurred_at.isoformat() if self.occurred_at else None,
            **self.terms.fingerprinted(),
        }

    def occurred(self, now: datetime) -> datetime:
        return min(self.occurred_at or now, now)

    def description(self, program: Program) -> str:
        currency = self.terms.currency or program.currency
        return f"Purchase {self.order_id}: {self.amount} {currency}"


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
    lines: Sequence[LineRequest] | None = None,
    currency: str | None = None,
) -> LedgerResult:
    purchase = PurchaseInput.check(
        member_id=member_id,
        order_id=order_id,
        amount=amount,
        occurred_at=occurred_at,
        now=now,
        lines=lines,
        currency=currency,
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
    first_purchase = member.last_purchase_at is None
    # Segment membership decides points: computed here, in this transaction with the member
    # locked, as of before this purchase (its rules count purchases and the last one's date,
    # so the order that makes a member qualify earns the promotion from the next order on).
    decided = await Targeting.decide(session, catalog, member.id, occurred, now)
    terms = purchase.terms
    quote = terms.quote(
        catalog,
        tier=catalog.tier(member.tier_id),
        promotions=decided.promotions,
        rules=decided.rules,
        first_purchase=first_purchase,
    )
    if member.last_purchase_at is None or occurred > member.last_purchase_at:
        member.last_purchase_at = occurred
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
            amount=program_amount(terms, catalog),
            occurred_at=occurred,
            entry_id=entry.id,
            points_earned=entry.points,  # 0 when withheld: refunds reverse what was earned
            refunded_amount=Decimal(0),
            points_reversed=0,
            currency=terms.currency,
            currency_rate=catalog.rate_of(terms.currency) if terms.currency else None,
            lines=recorded_lines(quote, entry.points),
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


@dataclass(frozen=True, slots=True)
class LineRefund:
    """A refund of some units of one line (RefundLineInput); quantity None: the rest of it."""

    line_id: str
    quantity: int | None = None


async def refund_purchase(
    session: AsyncSession,
    *,
    order_id: str,
    refund_id: str,
    amount: float | None,
    now: datetime,
    actor: str = "system",
    catalog: Catalog | None = None,
    lines: Sequence[LineRefund] | None = None,
) -> LedgerResult:
    order_id = reference_key(order_id, ["input", "orderId"])
    refund_id = reference_key(refund_id, ["input", "refundId"])
    if lines is not None and amount is not None:
        raise Invalid("refund either an amount or lines, not both", field=["input", "amount"])
    if lines is not None and not lines:
        raise Invalid("name at least one line", field=["input", "lines"])
    requested = purchase_amount(amount, ["input", "amount"]) if amount is not None else None
    request: dict[str, Any] = {
        "orderId": order_id,
        "amount": None if requested is None else str(requested),
    }
    if lines is not None:
        request["lines"] = [[line.line_id, line.quantity] for line in lines]
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
    if lines is not None:
        refunded_now, to_reverse = _refund_lines(purchase, lines)
        refunded_total = purchase.refunded_amount + refunded_now
    else:
        if requested is not None and purchase.currency_rate is not None:
            # Asked in the purchase's currency; the purchase keeps the program's.
            requested = (requested * purchase.currency_rate).quantize(CENT, ROUND_HALF_EVEN)
        refunded_now = refundable if requested is None else min(requested, refundable)
        refunded_total = purchase.refunded_amount + refunded_now
        if purchase.amount == 0 or refunded_total >= purchase.amount:
            target = purchase.points_earned
        else:
            target = math.floor(purchase.points_earned * refunded_total / purchase.amount)
        to_reverse = target - purchase.points_reversed
    # Never past what was earned, whichever way earlier refunds went (amounts, then lines).
    to_reverse = min(max(to_reverse, 0), purchase.points_earned - purchase.points_reversed)

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


def _refund_lines(purchase: Purchase, refunds: Sequence[LineRefund]) -> tuple[Decimal, int]:
    """Refund units of the purchase's lines (updating what it keeps of them): the amount
    refunded now (program currency) and the points to reverse. Each line reverses its points
    pro rata to the units refunded so far, floored, all of them with its last unit; the bonus
    only once every line is wholly refunded."""
    if purchase.lines is None:
        raise Invalid("this order was recorded without lines", field=["input", "lines"])
    kept = copy.deepcopy(purchase.lines)
    by_id = {line["id"]: line for line in kept["lines"]}
    amount = Decimal(0)
    points = 0
    seen: set[str] = set()
    for n, refund in enumerate(refunds):
        where = ["input", "lines", str(n)]
        line = by_id.get(refund.line_id)
        if line is None:
            raise NotFound("no line with this lineId in the order", field=[*where, "lineId"])
        if refund.line_id in seen:
            raise Invalid("each line at most once a refund", field=[*where, "lineId"])
        seen.add(refund.line_id)
        left = line["quantity"] - line["refunded"]
        quantity = left if refund.quantity is None else refund.quantity
        if left == 0:
            raise Invalid("this line is already fully refunded", field=[*where, "lineId"])
        if not 1 <= quantity <= left:
            raise Invalid(f"at most {left} units are left to refund", field=[*where, "quantity"])
        refunded = line["refunded"] + quantity
        line_amount = Decimal(line["amount"])
        amount += _share(line_amount, line["quantity"], refunded) - _share(
            line_amount, line["quantity"], line["refunded"]
        )
        target = (
            line["points"]
            if refunded == line["quantity"]
            else math.floor(line["points"] * refunded / line["quantity"])
        )
        points += target - line["reversed"]
        line["refunded"], line["reversed"] = refunded, target
    if all(line["refunded"] == line["quantity"] for line in kept["lines"]):
        points += kept["bonus"] - kept["bonusReversed"]
        kept["bonusReversed"] = kept["bonus"]
        # Every line back: the whole order is (cents lost converting lines included).
        amount = purchase.amount - purchase.refunded_amount
    purchase.lines = kept
    return min(amount, purchase.amount - purchase.refunded_amount), points


def _share(amount: Decimal, quantity: int, units: int) -> Decimal:
    """The part of a line's amount `units` of its `quantity` make, to the cent (all of it with
    the last unit)."""
    if units >= quantity:
        return amount
    return (amount * units / quantity).quantize(CENT, ROUND_DOWN)
