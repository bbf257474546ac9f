"""How many points a purchase earns, and why: one floor per line, shares that add up.

The one home of the earn formula (recordPurchase on both write paths, previewPurchase,
previewOrder): each line earns floor(base x pointsPerCurrencyUnit x currency rate x the highest
matching CATEGORY_MULTIPLIER x tier multiplier x every promotion's multiplier), plus
SKU_POINTS_PER_UNIT points x quantity; the order adds its bonus rules. An order without lines is
one line with no sku or category, so with no rules it is core's single floor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from models import EarningRule, EarningRuleKind, Program, Promotion, Tier
from services.errors import Invalid

MAX_PURCHASE_AMOUNT = Decimal("1000000000")  # 1e9 in the program currency: beyond it, a typo
CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Component:
    label: str
    points: int

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label, "points": self.points}


@dataclass(frozen=True, slots=True)
class EarnQuote:
    points: int
    components: tuple[Component, ...]
    lines: tuple[LineEarned, ...] = ()  # an order with lines: what each earned
    bonus: int = 0  # the order's bonus rules (first purchase, minimum order)

    def breakdown(self) -> list[dict[str, Any]]:
        return [c.as_json() for c in self.components]


def purchase_amount(value: float, field: list[str]) -> Decimal:
    """A purchase or refund amount: finite, not negative, not absurd, in cents."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise Invalid("amount must be a number", field=field)
    if isinstance(value, float) and not math.isfinite(value):
        raise Invalid("amount must be a finite number", field=field)
    amount = Decimal(str(value))
    if amount < 0:
        raise Invalid("amount must not be negative", field=field)
    if amount > MAX_PURCHASE_AMOUNT:
        raise Invalid("amount is too large", field=field)
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


def _fmt(number: Decimal) -> str:
    text = format(number.normalize(), "f")
    return text


@dataclass(frozen=True, slots=True)
class PurchaseLine:
    """One line of an order, checked (amount and tax in the purchase currency)."""

    line_id: str
    sku: str | None
    category: str | None
    quantity: int
    amount: Decimal
    tax: Decimal = Decimal(0)
    is_shipping: bool = False
    is_gift_card: bool = False
    is_discounted: bool = False

    def fingerprinted(self) -> list[Any]:
        return [
            self.line_id,
            self.sku,
            self.category,
            self.quantity,
            str(self.amount),
            str(self.tax),
            self.is_shipping,
            self.is_gift_card,
            self.is_discounted,
        ]


@dataclass(frozen=True, slots=True)
class LineEarned:
    """What one line earned (what a refund of the line reverses)."""

    line_id: str
    quantity: int
    points: int
    amount: Decimal  # in the program currency, to the cent


def rule_matches(rule: EarningRule, line: PurchaseLine) -> bool:
    """Every field the rule's match gives matches the line (`tax` is not a line property: it
    says which part of the line an EXCLUDE takes away)."""
    match = rule.match or {}
    return (
        ("category" not in match or match["category"] == line.category)
        and ("sku" not in match or match["sku"] == line.sku)
        and ("shipping" not in match or match["shipping"] == line.is_shipping)
        and ("giftCard" not in match or match["giftCard"] == line.is_gift_card)
        and ("discounted" not in match or match["discounted"] == line.is_discounted)
    )


def _excludes_tax_only(rule: EarningRule) -> bool:
    return bool((rule.match or {}).get("tax"))


class _Shares:
    """Components by label, in the order they first paid, summed over lines."""

    def __init__(self) -> None:
        self.points: dict[str, int] = {}

    def add(self, label: str, points: int) -> None:
        self.points[label] = self.points.get(label, 0) + points

    def components(self) -> tuple[Component, ...]:
        return tuple(Component(label, points) for label, points in self.points.items())


def quote_purchase(
    amount: Decimal,
    program: Program,
    tier: Tier,
    promotions: Sequence[Promotion],
    *,
    lines: Sequence[PurchaseLine] | None = None,
    rules: Sequence[EarningRule] = (),
    currency: str | None = None,
    rate: Decimal = Decimal(1),
    first_purchase: bool = False,
) -> EarnQuote:
    """What an order earns: the sum of its lines' floors plus its bonus rules.

    `rules` are the earning rules that apply to this member now (active, segment checked);
    `rate` converts the purchase `currency` to the program's. Within a line, each factor's
    share is the growth of the floored running product it causes, so the shares telescope to
    exactly the line's floored total; shares of the same factor add up over lines.
    """
    ppcu = program.points_per_currency_unit
    base_label = f"{_fmt(ppcu)} point{'s' if ppcu != 1 else ''} per 1.00 {program.currency} spent"
    if currency is not None and currency != program.currency:
        base_label += f" ({currency} at {_fmt(rate)})"
    order = (
        list(lines)
        if lines is not None
        else [PurchaseLine(line_id="", sku=None, category=None, quantity=1, amount=amount)]
    )
    by_kind: dict[EarningRuleKind, list[EarningRule]] = {kind: [] for kind in EarningRuleKind}
    for rule in rules:
        by_kind[rule.kind].append(rule)

    shares = _Shares()
    shares.add(base_label, 0)
    earned: list[LineEarned] = []
    earning_amount = Decimal(0)  # program currency, after exclusions
    for line in order:
        excluding = [r for r in by_kind[EarningRuleKind.EXCLUDE] if rule_matches(r, line)]
        whole = next((r for r in excluding if not _excludes_tax_only(r)), None)
        line_amount = (line.amount * rate).quantize(CENT, rounding=ROUND_HALF_EVEN)
        if whole is not None:
            shares.add(f"{whole.name}: not earning", 0)
            earned.append(LineEarned(line.line_id, line.quantity, 0, line_amount))
            continue
        base = line.amount
        if line.tax and excluding:
            base -= line.tax
            shares.add(f"{excluding[0].name}: tax not earning", 0)
        earning_amount += base * rate
        running = base * ppcu * rate
        floored = math.floor(running)
        shares.add(base_label, floored)
        multipliers = [
            r for r in by_kind[EarningRuleKind.CATEGORY_MULTIPLIER] if rule_matches(r, line)
        ]
        if multipliers:
            best = max(multipliers, key=lambda r: (r.multiplier or Decimal(1), -r.id))
            factor = best.multiplier or Decimal(1)
            running *= factor
            step = math.floor(running)
            shares.add(f"{best.name} x{_fmt(factor)}", step - floored)
            floored = step
        if tier.multiplier != 1:
            running *= tier.multiplier
            step = math.floor(running)
            shares.add(f"{tier.name} tier x{_fmt(tier.multiplier)}", step - floored)
            floored = step
        for promotion in promotions:
            running *= promotion.multiplier
            step = math.floor(running)
            shares.add(f"{promotion.name} x{_fmt(promotion.multiplier)}", step - floored)
            floored = step
        line_points = floored
        for rule in by_kind[EarningRuleKind.SKU_POINTS_PER_UNIT]:
            if rule_matches(rule, line):
                extra = (rule.points or 0) * line.quantity
                shares.add(f"{rule.name}: {rule.points} per unit", extra)
                line_points += extra
        earned.append(LineEarned(line.line_id, line.quantity, line_points, line_amount))

    bonus = 0
    if first_purchase:
        for rule in by_kind[EarningRuleKind.FIRST_PURCHASE_BONUS]:
            shares.add(rule.name, rule.points or 0)
            bonus += rule.points or 0
    for rule in by_kind[EarningRuleKind.MINIMUM_ORDER_BONUS]:
        if earning_amount >= (rule.minimum_amount or Decimal(0)):
            shares.add(rule.name, rule.points or 0)
            bonus += rule.points or 0
    total = sum(line.points for line in earned) + bonus
    return EarnQuote(
        points=total,
        components=shares.components(),
        lines=tuple(earned) if lines is not None else (),
        bonus=bonus,
    )


MAX_LINES = 500
MAX_QUANTITY = 1_000_000


@dataclass(frozen=True, slots=True)
class LineRequest:
    """A purchase line as given (PurchaseLineInput), before it is checked."""

    sku: str
    amount: float
    quantity: int = 1
    line_id: str | None = None
    category: str | None = None
    is_shipping: bool = False
    is_gift_card: bool = False
    is_discounted: bool = False
    tax: float = 0


def check_lines(
    given: Sequence[LineRequest], amount: Decimal, field: list[str]
) -> tuple[PurchaseLine, ...]:
    """The lines of an order: at most MAX_LINES, unique line ids (default: the sku), tax within
    the line, and adding up to `amount` to the cent (else INVALID on the order's amount)."""
    if not given:
        raise Invalid("an order with lines needs at least one", field=field)
    if len(given) > MAX_LINES:
        raise Invalid(f"at most {MAX_LINES} lines", field=field)
    lines: list[PurchaseLine] = []
    seen: set[str] = set()
    for n, line in enumerate(given):
        where = [*field, str(n)]
        sku = _text(line.sku, [*where, "sku"])
        line_id = _text(line.line_id, [*where, "lineId"]) if line.line_id is not None else sku
        if line_id in seen:
            raise Invalid("lineId must be unique in the order", field=[*where, "lineId"])
        seen.add(line_id)
        category = _text(line.category, [*where, "category"]) if line.category else None
        if not 1 <= line.quantity <= MAX_QUANTITY:
            raise Invalid(
                f"quantity must be between 1 and {MAX_QUANTITY}", field=[*where, "quantity"]
            )
        line_amount = purchase_amount(line.amount, [*where, "amount"])
        tax = purchase_amount(line.tax, [*where, "tax"])
        if tax > line_amount:
            raise Invalid("tax must not exceed the line's amount", field=[*where, "tax"])
        lines.append(
            PurchaseLine(
                line_id=line_id,
                sku=sku,
                category=category,
                quantity=line.quantity,
                amount=line_amount,
                tax=tax,
                is_shipping=line.is_shipping,
                is_gift_card=line.is_gift_card,
                is_discounted=line.is_discounted,
            )
        )
    total = sum((line.amount for line in lines), Decimal(0))
    if total != amount:
        raise Invalid(
            f"amount {amount} is not the sum of the lines ({total})", field=[field[0], "amount"]
        )
    return tuple(lines)


def _text(value: str, field: list[str]) -> str:
    text = value.strip()
    if not text:
        raise Invalid("must not be blank", field=field)
    if len(text) > 200:
        raise Invalid("must be at most 200 characters", field=field)
    return text
