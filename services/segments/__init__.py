"""Segments: named sets of members, defined by a rule (services.segments.rules) over the ledger
and the member rows, computed by the database (services.segments.sql): counted, listed, and
decided for one member exactly (what targeting will rely on)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models import ActivityType, Challenge, EarningRule, Member, Promotion, Reward, Segment
from models.engine import planner_settings
from services.errors import AlreadyExists, NotFound
from services.program import bump_catalog_version, clean_text
from services.segments.rules import GROUPS, RuleChecker, named_segments
from services.segments.sql import RuleSql, members_matching, membership

__all__ = [
    "CountCache",
    "SegmentUser",
    "all_rules",
    "create_segment",
    "delete_segment",
    "is_member",
    "locked_segment",
    "member_count",
    "members_page",
    "segments_containing",
    "segments_of",
    "update_segment",
    "users_of",
]


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def all_rules(session: AsyncSession) -> dict[int, dict[str, Any]]:
    """Every segment's rule by id (a rule may name others)."""
    return {s.id: s.rule for s in await session.scalars(select(Segment))}


async def _sql(session: AsyncSession, now: datetime) -> RuleSql:
    return RuleSql(dialect=_dialect(session), now=now, rules=await all_rules(session))


async def segments_containing(
    session: AsyncSession,
    member_id: int,
    ids: Collection[int],
    now: datetime,
    *,
    rules: Mapping[int, Mapping[str, Any]] | None = None,
) -> frozenset[int]:
    """Of the segments `ids`, those the member is in at `now`: one statement, in the caller's
    session (so inside a write, exactly what its transaction sees: what deciding points
    needs). `rules`: every segment's rule, if the caller has them (the catalog does)."""
    if not ids:
        return frozenset()
    known = rules if rules is not None else await all_rules(session)
    wanted = sorted(i for i in ids if i in known)
    if not wanted:
        return frozenset()
    sql = RuleSql(dialect=_dialect(session), now=now, rules=known)
    row = (await session.execute(membership(sql, member_id, [(i, known[i]) for i in wanted]))).one()
    return frozenset(i for i, inside in zip(wanted, row, strict=True) if inside)


def _name(value: str) -> str:
    return clean_text(value, ["input", "name"], max_length=200)


async def _flush(session: AsyncSession) -> None:
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists("a segment with this name exists", field=["input", "name"]) from exc


async def create_segment(
    session: AsyncSession, *, name: str, rule: Mapping[str, Any], now: datetime
) -> Segment:
    clean = _name(name)
    if await session.scalar(select(Segment.id).where(Segment.name == clean)) is not None:
        raise AlreadyExists("a segment with this name exists", field=["input", "name"])
    kept = await RuleChecker(session).check(rule, ["input", "rule"])
    segment = Segment(name=clean, rule=kept, created_at=now, updated_at=now)
    session.add(segment)
    await _flush(session)
    return segment


async def locked_segment(session: AsyncSession, segment_id: int) -> Segment:
    segment = await session.get(Segment, segment_id, with_for_update=True)
    if segment is None:
        raise NotFound("no such segment", field=["input", "id"])
    return segment


async def update_segment(
    session: AsyncSession,
    segment: Segment,
    *,
    name: str | None,
    rule: Mapping[str, Any] | None,
    now: datetime,
) -> Segment:
    """Only what is given changes."""
    if name is not None:
        clean = _name(name)
        taken = await session.scalar(
            select(Segment.id).where(Segment.name == clean, Segment.id != segment.id)
        )
        if taken is not None:
            raise AlreadyExists("a segment with this name exists", field=["input", "name"])
        segment.name = clean
    if rule is not None:
        checker = RuleChecker(session, segment_id=segment.id)
        segment.rule = await checker.check(rule, ["input", "rule"])
        # Targeted promotions price with the catalog's copy of the rules: a write must see
        # the new rule (services.catalog compares the version in the write).
        await bump_catalog_version(session)
    segment.updated_at = now
    await _flush(session)
    return segment


# What may name a segment: another segment's rule, or an object targeted at it.
SegmentUser = Segment | Promotion | Reward | Challenge | ActivityType | EarningRule
_TARGETED = (Promotion, Challenge, ActivityType, EarningRule)


async def users_of(session: AsyncSession, segment_id: int) -> list[SegmentUser]:
    """What refers to the segment (and keeps it from being deleted): other segments' rules,
    and every object targeted at it (rewards also when they open early to it); one query
    each kind."""
    users: list[SegmentUser] = [
        s for s in await session.scalars(select(Segment)) if segment_id in named_segments(s.rule)
    ]
    users.extend(
        await session.scalars(
            select(Reward)
            .where(
                (Reward.segment_id == segment_id) | (Reward.early_access_segment_id == segment_id)
            )
            .order_by(Reward.id)
        )
    )
    for model in _TARGETED:
        users.extend(
            await session.scalars(
                select(model).where(model.segment_id == segment_id).order_by(model.id)
            )
        )
    return users


async def delete_segment(session: AsyncSession, segment: Segment) -> None:
    """Delete an unused segment (the caller checks `users_of` first: IN_USE)."""
    await session.delete(segment)
    await session.flush()


async def member_count(session: AsyncSession, segment: Segment, now: datetime) -> int:
    sql = await _sql(session, now)
    stmt = select(func.count()).select_from(Member.__table__).where(sql.matches(segment.rule))
    # A serial plan for a purchase window: PostgreSQL's parallel plan builds the whole
    # per-member aggregate once in every worker (the inner side of a parallel join is not
    # shared), three processes doing one's work on two cores. Rules on member rows alone
    # gain from a parallel scan and keep it (bench.segments).
    serial = (
        {"max_parallel_workers_per_gather": "0"} if _sums_a_window(segment.rule, sql.rules) else {}
    )
    async with planner_settings(session, serial):
        return int(await session.scalar(stmt) or 0)


def _sums_a_window(
    rule: Mapping[str, Any],
    rules: Mapping[int, Mapping[str, Any]],
    seen: frozenset[int] = frozenset(),
) -> bool:
    """Whether the rule, or a segment it names, counts or sums purchases over a window."""
    for group in GROUPS:
        for condition in rule.get(group) or ():
            if "purchaseCount" in condition or "purchaseAmount" in condition:
                return True
            inner = condition.get("inSegment")
            if (
                inner is not None
                and inner not in seen
                and _sums_a_window(rules.get(inner, {}), rules, seen | {inner})
            ):
                return True
    return False


async def members_page(
    session: AsyncSession,
    segment: Segment,
    now: datetime,
    *,
    first: int,
    after: tuple[datetime, int] | None,
) -> Sequence[Row[Any]]:
    """Up to `first` members of the segment, by join date then id, after a keyset position."""
    sql = await _sql(session, now)
    stmt = members_matching(sql, segment.rule)
    columns = Member.__table__.c
    if after is not None:
        joined_at, member_id = after
        stmt = stmt.where(
            (columns.joined_at > joined_at)
            | ((columns.joined_at == joined_at) & (columns.id > member_id))
        )
    stmt = stmt.order_by(columns.joined_at, columns.id).limit(first)
    return (await session.execute(stmt)).all()


async def segments_of(session: AsyncSession, member_id: int, now: datetime) -> list[Segment]:
    """The segments the member is in now, by name: one statement, whatever their number."""
    segments = list(await session.scalars(select(Segment).order_by(Segment.name)))
    rules = {s.id: s.rule for s in segments}
    inside = await segments_containing(session, member_id, rules, now, rules=rules)
    return [segment for segment in segments if segment.id in inside]


async def is_member(session: AsyncSession, segment_id: int, member_id: int, now: datetime) -> bool:
    """Exactly, now, in the caller's transaction (what deciding points needs)."""
    return segment_id in await segments_containing(session, member_id, [segment_id], now)


class CountCache:
    """Segment member counts, kept a few seconds per process (an admin page asks again and
    again; a count of a million members costs a scan). Bounded in entries."""

    def __init__(self, *, seconds: float = 5.0, size: int = 256) -> None:
        self._seconds = seconds
        self._size = size
        self._counts: OrderedDict[tuple[int, datetime], tuple[float, int]] = OrderedDict()

    async def count(self, session: AsyncSession, segment: Segment, now: datetime) -> int:
        key = (segment.id, segment.updated_at)
        found = self._counts.get(key)
        if found is not None and found[0] > time.monotonic():
            return found[1]
        total = await member_count(session, segment, now)
        self._counts[key] = (time.monotonic() + self._seconds, total)
        self._counts.move_to_end(key)
        while len(self._counts) > self._size:
            self._counts.popitem(last=False)
        return total


def rule_groups(rule: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The rule's groups that are set (what `SegmentRule` shows)."""
    return {group: list(rule[group]) for group in GROUPS if rule.get(group)}
