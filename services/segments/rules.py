"""A segment's rule, checked and kept: `{"all": [condition, ...], "any": [condition, ...]}`.

A member matches when it meets every condition of `all` and at least one of `any` (a rule gives
one group or both). Each condition has exactly one key, as the GraphQL input names it, with the
objects it names as primary keys:

    {"tierIn": [tier ids]}                  {"availablePoints": {"min": int, "max": int}}
    {"lifetimePoints": {"min", "max"}}      {"purchaseCount": {"lastDays": int, "min", "max"}}
    {"purchaseAmount": {"lastDays", "min": float, "max": float}}
    {"daysSinceLastPurchase": {"min", "max"}}
    {"joinedAfter": ISO datetime}           {"joinedBefore": ISO datetime}
    {"birthdayMonth": 1-12}                 {"hasBadge": badge id}
    {"attribute": {"key": str, "equals": str}}
    {"inSegment": segment id}

Anything else (an empty group, an unknown ID, a negative bound, min > max, a cycle of
segments) is refused with INVALID naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Badge, Segment, Tier
from services.errors import Invalid
from services.global_ids import decode_id

CONDITIONS = (
    "tierIn",
    "availablePoints",
    "lifetimePoints",
    "purchaseCount",
    "purchaseAmount",
    "daysSinceLastPurchase",
    "joinedAfter",
    "joinedBefore",
    "birthdayMonth",
    "hasBadge",
    "attribute",
    "inSegment",
)
GROUPS = ("all", "any")
MAX_CONDITIONS = 50
MAX_DAYS = 3650
MAX_ATTRIBUTE_KEY = 64
MAX_ATTRIBUTE_VALUE = 1000
MAX_NESTING = 8  # segments inside segments


class RuleChecker:
    """Checks a rule given as input (GraphQL names, global IDs) and returns it as kept."""

    def __init__(self, session: AsyncSession, *, segment_id: int | None = None) -> None:
        self._session = session
        self._segment_id = segment_id  # the segment being updated (a rule may not name it)

    async def check(self, rule: Mapping[str, Any], field: Sequence[str]) -> dict[str, Any]:
        groups = {g: rule.get(g) for g in GROUPS if rule.get(g) is not None}
        if not groups:
            raise Invalid("give `all`, `any` or both", field=[*field])
        kept: dict[str, Any] = {}
        for group, conditions in groups.items():
            where = [*field, group]
            if not conditions:
                raise Invalid("a group needs at least one condition", field=where)
            if len(conditions) > MAX_CONDITIONS:
                raise Invalid(f"at most {MAX_CONDITIONS} conditions a group", field=where)
            kept[group] = [
                await self._condition(condition, [*where, str(n)])
                for n, condition in enumerate(conditions)
            ]
        return kept

    async def _condition(self, condition: Mapping[str, Any], field: list[str]) -> dict[str, Any]:
        given = [name for name in CONDITIONS if condition.get(name) is not None]
        if len(given) != 1:
            raise Invalid("set exactly one field of a condition", field=field)
        (name,) = given
        value = condition[name]
        where = [*field, name]
        check: Callable[[Any, list[str]], Any] = getattr(self, f"_{_snake(name)}")
        kept = check(value, where)
        if hasattr(kept, "__await__"):
            kept = await kept
        return {name: kept}

    # ------------------------------------------------------------ one checker a condition

    async def _tier_in(self, value: Sequence[str], field: list[str]) -> list[int]:
        if not value:
            raise Invalid("name at least one tier", field=field)
        ids = sorted({_pk(v, "Tier", field) for v in value})
        found = set(await self._session.scalars(select(Tier.id).where(Tier.id.in_(ids))))
        if missing := [i for i in ids if i not in found]:
            raise Invalid(f"unknown tier ({len(missing)} of the IDs)", field=field)
        return ids

    def _available_points(self, value: Mapping[str, Any], field: list[str]) -> dict[str, Any]:
        return _range(value, field, whole=True)

    def _lifetime_points(self, value: Mapping[str, Any], field: list[str]) -> dict[str, Any]:
        return _range(value, field, whole=True)

    def _days_since_last_purchase(
        self, value: Mapping[str, Any], field: list[str]
    ) -> dict[str, Any]:
        return _range(value, field, whole=True)

    def _purchase_count(self, value: Mapping[str, Any], field: list[str]) -> dict[str, Any]:
        return {"lastDays": _days(value, field), **_range(value, field, whole=True)}

    def _purchase_amount(self, value: Mapping[str, Any], field: list[str]) -> dict[str, Any]:
        return {"lastDays": _days(value, field), **_range(value, field, whole=False)}

    def _joined_after(self, value: datetime, field: list[str]) -> str:
        return value.isoformat()

    def _joined_before(self, value: datetime, field: list[str]) -> str:
        return value.isoformat()

    def _birthday_month(self, value: int, field: list[str]) -> int:
        if not 1 <= value <= 12:
            raise Invalid("a month is 1 to 12", field=field)
        return value

    async def _has_badge(self, value: str, field: list[str]) -> int:
        pk = _pk(value, "Badge", field)
        if await self._session.get(Badge, pk) is None:
            raise Invalid("unknown badge", field=field)
        return pk

    def _attribute(self, value: Mapping[str, Any], field: list[str]) -> dict[str, str]:
        key, equals = value.get("key"), value.get("equals")
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_ATTRIBUTE_KEY:
            raise Invalid(f"key is 1 to {MAX_ATTRIBUTE_KEY} characters", field=[*field, "key"])
        if not isinstance(equals, str) or len(equals) > MAX_ATTRIBUTE_VALUE:
            raise Invalid(
                f"equals is at most {MAX_ATTRIBUTE_VALUE} characters", field=[*field, "equals"]
            )
        return {"key": key, "equals": equals}

    async def _in_segment(self, value: str, field: list[str]) -> int:
        pk = _pk(value, "Segment", field)
        if pk == self._segment_id:
            raise Invalid("a segment cannot contain itself", field=field)
        segment = await self._session.get(Segment, pk)
        if segment is None:
            raise Invalid("unknown segment", field=field)
        if self._segment_id is not None and self._segment_id in await nested(self._session, pk):
            raise Invalid("segments would contain each other (a cycle)", field=field)
        if len(await nested(self._session, pk)) >= MAX_NESTING:
            raise Invalid(f"segments nest at most {MAX_NESTING} deep", field=field)
        return pk


async def nested(session: AsyncSession, segment_id: int) -> set[int]:
    """Every segment `segment_id`'s rule names, directly or through others."""
    found: set[int] = set()
    todo = [segment_id]
    while todo:
        segment = await session.get(Segment, todo.pop())
        if segment is None:
            continue
        for inner in named_segments(segment.rule):
            if inner not in found:
                found.add(inner)
                todo.append(inner)
    return found


def named_segments(rule: Mapping[str, Any]) -> list[int]:
    return [
        condition["inSegment"]
        for group in GROUPS
        for condition in rule.get(group) or ()
        if "inSegment" in condition
    ]


def _pk(value: str, type_name: str, field: list[str]) -> int:
    decoded = decode_id(value)
    if decoded is None or decoded[0] != type_name:
        raise Invalid(f"not a {type_name} ID", field=field)
    return decoded[1]


def _days(value: Mapping[str, Any], field: list[str]) -> int:
    days = value.get("lastDays")
    if not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise Invalid(f"lastDays is 1 to {MAX_DAYS}", field=[*field, "lastDays"])
    return days


def _range(value: Mapping[str, Any], field: list[str], *, whole: bool) -> dict[str, Any]:
    low, high = value.get("min"), value.get("max")
    if low is None and high is None:
        raise Invalid("give min, max or both", field=field)
    for name, bound in (("min", low), ("max", high)):
        if bound is None:
            continue
        if isinstance(bound, float) and not math.isfinite(bound):
            raise Invalid(f"{name} must be a finite number", field=[*field, name])
        if bound < 0:
            raise Invalid(f"{name} must not be negative", field=[*field, name])
    if low is not None and high is not None and low > high:
        raise Invalid("min must not be above max", field=[*field, "min"])
    cast = int if whole else float
    return {
        "min": cast(low) if low is not None else None,
        "max": cast(high) if high is not None else None,
    }


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
