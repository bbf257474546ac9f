"""A segment's rule as one SQL condition on a `members` row, on PostgreSQL and SQLite.

Every condition is a plain comparison of the member's columns, or a subquery that PostgreSQL
flattens into a semi- or anti-join: `IN (SELECT member_id ... GROUP BY member_id HAVING ...)`
for counts and sums over a window (computed once for every member, not once a member), and
correlated `EXISTS` for badges. So the same condition counts a million members in one pass
and decides one member with a few index lookups (the member's id pushes down into each
subquery). A purchase counts by when it happened (`occurredAt`), for its amount in the
program currency less what was refunded (`net_cents`, kept by the database); the latest one is
kept on the member row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    case,
    cast,
    exists,
    extract,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)

from models import Member, MemberBadge, Purchase

_m = Member.__table__.c
_p = Purchase.__table__.c
_badges = MemberBadge.__table__.c


class RuleSql:
    """Compiles rules against `members` at `now`; `rules` holds every segment's rule by id
    (for `inSegment`)."""

    def __init__(self, *, dialect: str, now: datetime, rules: Mapping[int, Mapping[str, Any]]):
        self.dialect = dialect
        self.now = now
        self.rules = rules

    def matches(self, rule: Mapping[str, Any]) -> ColumnElement[bool]:
        parts: list[ColumnElement[bool]] = []
        if rule.get("all"):
            parts.append(and_(*(self.condition(c) for c in rule["all"])))
        if rule.get("any"):
            parts.append(or_(*(self.condition(c) for c in rule["any"])))
        return and_(*parts) if parts else false()

    def condition(self, condition: Mapping[str, Any]) -> ColumnElement[bool]:
        ((name, value),) = condition.items()
        if name == "tierIn":
            return _m.tier_id.in_(list(value))
        if name == "availablePoints":
            return _between(_m.available, value)
        if name == "lifetimePoints":
            return _between(_m.lifetime_earned, value)
        if name == "purchaseCount":
            return self._per_member(func.count(), value)
        if name == "purchaseAmount":
            # Summed in cents (integers: a streaming sum, not numeric arithmetic per row).
            cents = dict(value)
            for bound in ("min", "max"):
                if value.get(bound) is not None:
                    cents[bound] = Decimal(str(value[bound])) * 100
            return self._per_member(func.coalesce(func.sum(_p.net_cents), 0), cents)
        if name == "daysSinceLastPurchase":
            return self._days_since_last_purchase(value)
        if name == "joinedAfter":
            return _m.joined_at >= datetime.fromisoformat(value)
        if name == "joinedBefore":
            return _m.joined_at < datetime.fromisoformat(value)
        if name == "birthdayMonth":
            return extract("month", _m.birthday) == int(value)
        if name == "hasBadge":
            return exists().where(_badges.member_id == _m.id, _badges.badge_id == value)
        if name == "attribute":
            text: ColumnElement[bool] = self._attribute_text(value["key"]) == value["equals"]
            return text
        if name == "inSegment":
            return self.matches(self.rules.get(value, {}))
        raise ValueError(f"unknown condition {name!r}")

    # ------------------------------------------------------------ purchases

    def _per_member(
        self, figure: ColumnElement[Any], bounds: Mapping[str, Any]
    ) -> ColumnElement[bool]:
        """min <= figure <= max, the figure taken over the member's purchases in the window
        (0 for a member with none): one pass over the window's purchases, grouped by member.
        On PostgreSQL an index holds the member, the time and the cents: a long window is
        read in member order and merged with `members`, a short one read by time."""
        since = self.now - timedelta(days=bounds["lastDays"])
        low, high = bounds.get("min"), bounds.get("max")
        grouped = select(_p.member_id).where(_p.occurred_at >= since).group_by(_p.member_id)
        if low is not None and low > 0:
            having = [figure >= low] + ([figure <= high] if high is not None else [])
            return _m.id.in_(grouped.having(and_(*having)))
        if high is None:
            return true()  # at least 0 of anything
        over = grouped.having(figure > high).subquery()
        return not_(exists().where(over.c.member_id == _m.id))

    def _days_since_last_purchase(self, bounds: Mapping[str, Any]) -> ColumnElement[bool]:
        """The last purchase happened `min` to `max` whole days ago, i.e. in
        (now - (max + 1) days, now - min days] (members keep the moment of their latest
        purchase). Members who never purchased never match."""
        latest = _m.last_purchase_at
        parts = [latest <= self.now - timedelta(days=bounds.get("min") or 0)]
        if bounds.get("max") is not None:
            parts.append(latest > self.now - timedelta(days=bounds["max"] + 1))
        return and_(*parts)

    # ------------------------------------------------------------ attributes

    def _attribute_text(self, key: str) -> ColumnElement[str]:
        """The attribute as text: strings as they are, numbers in JSON form, booleans as
        true/false (what PostgreSQL's ->> gives; SQLite's json_extract is typed)."""
        if self.dialect == "postgresql":
            found: ColumnElement[str] = _m.attributes.op("->>")(literal(key, String))
            return found
        path = '$."' + key.replace('"', '\\"') + '"'
        kind = func.json_type(_m.attributes, path)
        return case(
            (kind == "true", literal("true")),
            (kind == "false", literal("false")),
            else_=cast(func.json_extract(_m.attributes, path), String),
        )


def _between(column: ColumnElement[Any], bounds: Mapping[str, Any]) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    if bounds.get("min") is not None:
        parts.append(column >= bounds["min"])
    if bounds.get("max") is not None:
        parts.append(column <= bounds["max"])
    return and_(*parts)


def members_matching(sql: RuleSql, rule: Mapping[str, Any]) -> Select[Any]:
    """`SELECT members.* WHERE <rule>`."""
    return select(Member.__table__).where(sql.matches(rule))


def membership(
    sql: RuleSql, member_id: int, rules: Sequence[tuple[int, Mapping[str, Any]]]
) -> Select[Any]:
    """One row: for each (segment id, rule), whether the member matches (one round trip)."""
    return select(
        *(
            exists(select(_m.id).where(_m.id == member_id, sql.matches(rule))).label(
                f"s{segment_id}"
            )
            for segment_id, rule in rules
        )
    )
