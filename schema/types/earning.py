"""Earning rules and currency rates as admins read them."""

from __future__ import annotations

from datetime import datetime

import strawberry

import models
from schema.ids import encode_id
from schema.types.node import Node
from schema.types.segments import Segment
from services.earning_rules import rule_active

strawberry.enum(models.EarningRuleKind, name="EarningRuleKind")


@strawberry.type(
    description="A line matches when every field given matches (category and sku exactly)"
)
class EarningRuleMatch:
    category: str | None = None
    sku: str | None = None
    shipping: bool | None = None
    gift_card: bool | None = None
    discounted: bool | None = None
    tax: bool | None = None


@strawberry.type
class EarningRule(Node):
    id: strawberry.ID
    name: str
    kind: models.EarningRuleKind
    match: EarningRuleMatch | None
    multiplier: float | None
    points: int | None
    minimum_amount: float | None
    segment: Segment | None
    starts_at: datetime | None
    ends_at: datetime | None
    active: bool

    @classmethod
    def from_row(
        cls, row: models.EarningRule, segment: models.Segment | None, now: datetime
    ) -> EarningRule:
        match = row.match
        return cls(
            id=strawberry.ID(encode_id("EarningRule", row.id)),
            name=row.name,
            kind=row.kind,
            match=EarningRuleMatch(
                category=match.get("category"),
                sku=match.get("sku"),
                shipping=match.get("shipping"),
                gift_card=match.get("giftCard"),
                discounted=match.get("discounted"),
                tax=match.get("tax"),
            )
            if match is not None
            else None,
            multiplier=float(row.multiplier) if row.multiplier is not None else None,
            points=row.points,
            minimum_amount=float(row.minimum_amount) if row.minimum_amount is not None else None,
            segment=Segment.from_row(segment) if segment is not None else None,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            active=rule_active(row, now),
        )


@strawberry.type(
    description="rate: program-currency units per one unit of `currency` "
    "(EUR 1.1 in a USD program: 100 EUR counts as 110)"
)
class CurrencyRate:
    currency: str
    rate: float
    updated_at: datetime

    @classmethod
    def from_row(cls, row: models.CurrencyRate) -> CurrencyRate:
        return cls(currency=row.currency, rate=float(row.rate), updated_at=row.updated_at)
