"""Earning rules (admin): how purchase lines and orders earn beyond the program's rate.

Created, changed (never their kind) and ended here; applied by services.ledger.earning from
the catalog snapshot (services.catalog), so every change bumps the catalog version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import EarningRule, EarningRuleKind, Segment
from services.errors import Invalid, NotFound
from services.ledger.earning import CENT, MAX_PURCHASE_AMOUNT
from services.program import (
    MAX_MULTIPLIER,
    MAX_POINTS,
    bump_catalog_version,
    clean_text,
    positive_decimal,
)

LINE_KINDS = frozenset(
    {
        EarningRuleKind.CATEGORY_MULTIPLIER,
        EarningRuleKind.SKU_POINTS_PER_UNIT,
        EarningRuleKind.EXCLUDE,
    }
)
# The fields each kind needs (and only those): GraphQL names.
NEEDS: Mapping[EarningRuleKind, frozenset[str]] = {
    EarningRuleKind.CATEGORY_MULTIPLIER: frozenset({"match", "multiplier"}),
    EarningRuleKind.SKU_POINTS_PER_UNIT: frozenset({"match", "points"}),
    EarningRuleKind.EXCLUDE: frozenset({"match"}),
    EarningRuleKind.FIRST_PURCHASE_BONUS: frozenset({"points"}),
    EarningRuleKind.MINIMUM_ORDER_BONUS: frozenset({"points", "minimumAmount"}),
}
VALUE_FIELDS = ("match", "multiplier", "points", "minimumAmount")
MATCH_TEXT = ("category", "sku")
MATCH_FLAGS = ("shipping", "giftCard", "discounted", "tax")


def rule_active(rule: EarningRule, at: datetime) -> bool:
    """Inside its dates (an ended rule's `ends_at` is when it was ended)."""
    return (rule.starts_at is None or rule.starts_at <= at) and (
        rule.ends_at is None or at < rule.ends_at
    )


def _match(kind: EarningRuleKind, value: Mapping[str, Any]) -> dict[str, Any]:
    """The fields given (null ones dropped), at least one; `tax` only on EXCLUDE."""
    field = ["input", "match"]
    kept: dict[str, Any] = {}
    for name in MATCH_TEXT:
        if value.get(name) is not None:
            kept[name] = clean_text(value[name], [*field, name], max_length=200)
    for name in MATCH_FLAGS:
        if value.get(name) is not None:
            kept[name] = bool(value[name])
    if "tax" in kept and kind is not EarningRuleKind.EXCLUDE:
        raise Invalid("tax applies to EXCLUDE rules only", field=[*field, "tax"])
    if not kept:
        raise Invalid("match needs at least one field", field=field)
    return kept


def _values(kind: EarningRuleKind, given: Mapping[str, Any]) -> dict[str, Any]:
    """The kind's value fields, checked: what it needs is given (not null), nothing else is."""
    needs = NEEDS[kind]
    clean: dict[str, Any] = {}
    for name in VALUE_FIELDS:
        field = ["input", name]
        value = given.get(name)
        if name not in needs:
            if value is not None:
                raise Invalid(f"{kind.value} rules take no {name}", field=field)
            continue
        if value is None:
            raise Invalid(f"{kind.value} rules need {name}", field=field)
        if name == "match":
            clean["match"] = _match(kind, value)
        elif name == "multiplier":
            clean["multiplier"] = positive_decimal(value, field, maximum=MAX_MULTIPLIER)
        elif name == "points":
            if not 0 < value <= MAX_POINTS:
                raise Invalid("points must be between 1 and 1,000,000,000", field=field)
            clean["points"] = value
        else:
            amount = positive_decimal(value, field, maximum=MAX_PURCHASE_AMOUNT)
            clean["minimum_amount"] = amount.quantize(CENT)
    return clean


async def _segment(session: AsyncSession, segment_id: int | None) -> int | None:
    if segment_id is not None and await session.get(Segment, segment_id) is None:
        raise NotFound("no such segment", field=["input", "segmentId"])
    return segment_id


def _check_window(starts_at: datetime | None, ends_at: datetime | None) -> None:
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise Invalid("endsAt must be after startsAt", field=["input", "endsAt"])


async def create_rule(
    session: AsyncSession,
    *,
    name: str,
    kind: EarningRuleKind,
    values: Mapping[str, Any],
    segment_id: int | None,
    starts_at: datetime | None,
    ends_at: datetime | None,
    now: datetime,
) -> EarningRule:
    """`values`: match, multiplier, points, minimumAmount as given (null: not given)."""
    clean_name = clean_text(name, ["input", "name"], max_length=200)
    clean = _values(kind, values)
    _check_window(starts_at, ends_at)
    rule = EarningRule(
        name=clean_name,
        kind=kind,
        segment_id=await _segment(session, segment_id),
        starts_at=starts_at,
        ends_at=ends_at,
        created_at=now,
        updated_at=now,
        **clean,
    )
    session.add(rule)
    await session.flush()
    await bump_catalog_version(session)
    return rule


async def locked_rule(session: AsyncSession, rule_id: int) -> EarningRule:
    rule = await session.get(EarningRule, rule_id, with_for_update=True)
    if rule is None:
        raise NotFound("no such earning rule", field=["input", "id"])
    return rule


def _current_values(rule: EarningRule) -> dict[str, Any]:
    return {
        "match": rule.match,
        "multiplier": rule.multiplier,
        "points": rule.points,
        "minimumAmount": rule.minimum_amount,
    }


async def update_rule(
    session: AsyncSession, rule: EarningRule, changes: Mapping[str, Any], now: datetime
) -> EarningRule:
    """Only the fields in `changes` (GraphQL names) change; the kind never does. A field the
    kind does not take, or null for one it needs, is INVALID."""
    if "name" in changes:
        if changes["name"] is None:
            raise Invalid("name cannot be null", field=["input", "name"])
        rule.name = clean_text(changes["name"], ["input", "name"], max_length=200)
    given = {name: changes[name] for name in VALUE_FIELDS if name in changes}
    if given:
        merged = {**_current_values(rule), **given}
        if "multiplier" in merged and isinstance(merged["multiplier"], Decimal):
            merged["multiplier"] = float(merged["multiplier"])
        if isinstance(merged.get("minimumAmount"), Decimal):
            merged["minimumAmount"] = float(merged["minimumAmount"])
        for name, value in _values(rule.kind, merged).items():
            setattr(rule, name, value)
    if "segmentId" in changes:
        rule.segment_id = await _segment(session, changes["segmentId"])
    if "startsAt" in changes:
        rule.starts_at = changes["startsAt"]
    if "endsAt" in changes:
        rule.ends_at = changes["endsAt"]
    _check_window(rule.starts_at, rule.ends_at)
    rule.updated_at = now
    await session.flush()
    await bump_catalog_version(session)
    return rule


async def end_rule(session: AsyncSession, rule: EarningRule, now: datetime) -> EarningRule:
    """End it now; purchases already recorded keep what they earned. One already ended stays."""
    if rule.ends_at is not None and rule.ends_at <= now:
        return rule
    rule.ends_at = now
    if rule.starts_at is not None and rule.starts_at > now:
        rule.starts_at = now
    rule.updated_at = now
    await session.flush()
    await bump_catalog_version(session)
    return rule


async def list_rules(
    session: AsyncSession, *, active_only: bool, now: datetime
) -> Sequence[EarningRule]:
    rules = list(await session.scalars(select(EarningRule).order_by(EarningRule.id)))
    return [r for r in rules if rule_active(r, now)] if active_only else rules


async def active_rules(session: AsyncSession, at: datetime) -> list[EarningRule]:
    """The rules active at `at`, from the database (a purchase older than the catalog holds)."""
    stmt = (
        select(EarningRule)
        .where(
            (EarningRule.starts_at.is_(None)) | (EarningRule.starts_at <= at),
            (EarningRule.ends_at.is_(None)) | (EarningRule.ends_at > at),
        )
        .order_by(EarningRule.id)
    )
    return list(await session.scalars(stmt))
