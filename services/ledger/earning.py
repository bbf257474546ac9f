"""How many points a purchase earns, and why: one floor at the end, shares that add up."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from models import Program, Promotion, Tier
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


def quote_purchase(
    amount: Decimal, program: Program, tier: Tier, promotions: Sequence[Promotion]
) -> EarnQuote:
    """floor(amount x rate x tier multiplier x every promotion's multiplier).

    Each factor's share is the growth of the floored running product it causes, so the shares
    telescope to exactly the final floored total.
    """
    rate = program.points_per_currency_unit
    running = amount * rate
    floored = math.floor(running)
    components = [
        Component(
            f"{_fmt(rate)} point{'s' if rate != 1 else ''} per 1.00 {program.currency} spent",
            floored,
        )
    ]
    if tier.multiplier != 1:
        running *= tier.multiplier
        step = math.floor(running)
        components.append(Component(f"{tier.name} tier x{_fmt(tier.multiplier)}", step - floored))
        floored = step
    for promotion in promotions:
        running *= promotion.multiplier
        step = math.floor(running)
        components.append(
            Component(f"{promotion.name} x{_fmt(promotion.multiplier)}", step - floored)
        )
        floored = step
    return EarnQuote(points=floored, components=tuple(components))
