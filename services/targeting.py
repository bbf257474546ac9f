"""Targeting: who a segment-targeted promotion, reward or challenge is for.

A targeted object names a segment (`segment_id`); it exists only for the segment's members
(admins see everything). Which active promotions pay a member is decided here, in one place
(`applicable_promotions`), by both purchase paths and by previewPurchase. Membership that
decides points is computed in the write's own statement or transaction, never from a cache:
`services.segments.segments_containing` runs the segments' rules for one member in the
caller's session, and
`MembershipQuery` gives the direct path (services.direct.purchases) the same rules as one
asyncpg statement.

Segment rules count purchases, so membership is evaluated as of the purchase being recorded,
before it: the order that makes a member qualify earns the promotion from the next order on.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar, cast

from sqlalchemy import BigInteger, DateTime, bindparam
from sqlalchemy.ext.asyncio import AsyncSession

from models import Challenge, Promotion, Reward, Segment, Tier
from services.direct.statements import AsyncpgStatement, for_asyncpg
from services.errors import NotFound
from services.experiments import treated
from services.segments import segments_containing
from services.segments.sql import RuleSql, membership


class Targeted(Protocol):
    @property
    def segment_id(self) -> int | None: ...


T = TypeVar("T", bound=Targeted)


def segment_ids(items: Iterable[Targeted]) -> frozenset[int]:
    """The segments `items` are targeted at."""
    return frozenset(item.segment_id for item in items if item.segment_id is not None)


def admitted(items: Iterable[T], segments: Collection[int]) -> list[T]:
    """The items that exist for a member in `segments` (untargeted ones, and those targeted at
    one of its segments), in their order."""
    return [item for item in items if item.segment_id is None or item.segment_id in segments]


def applicable_promotions(
    promotions: Sequence[Promotion], *, member_id: int | None, segments: Collection[int]
) -> list[Promotion]:
    """Of the active `promotions`, those that pay this member: the one rule both purchase paths
    and previewPurchase apply. `segments`: the member's segments among the promotions' (exact,
    as of before the purchase); `member_id` None prices for no member in particular (an
    untargeted preview), which no targeted promotion pays (and no experiment holds out)."""
    if member_id is None:
        return [p for p in promotions if p.segment_id is None]
    # A member an experiment holds out (CONTROL) earns as if the promotion did not exist.
    return [p for p in admitted(promotions, segments) if treated(p, member_id)]


class MembershipQuery:
    """The membership of one member in a few segments as one asyncpg statement (the direct
    path's extra read), for a catalog snapshot's rules: compiled once per set of segments,
    with the member and `now` as parameters, since compiling a rule costs ~1-2 ms. Kept with
    the snapshot it compiles (services.catalog), so never older than its rules; bounded in
    entries."""

    def __init__(self, rules: Mapping[int, Mapping[str, Any]], *, size: int = 64) -> None:
        self._rules = rules
        self._size = size
        self._compiled: OrderedDict[tuple[int, ...], AsyncpgStatement] = OrderedDict()

    def statement(self, ids: Collection[int]) -> tuple[AsyncpgStatement | None, list[int]]:
        """(The statement, with parameters `member_id` and `now`; the segment ids its columns
        answer for, in order), or (None, []) when no segment of `ids` has a rule."""
        wanted = tuple(sorted(i for i in ids if i in self._rules))
        if not wanted:
            return None, []
        found = self._compiled.get(wanted)
        if found is None:
            found = self._compile(wanted)
            self._compiled[wanted] = found
            while len(self._compiled) > self._size:
                self._compiled.popitem(last=False)
        self._compiled.move_to_end(wanted)
        return found, list(wanted)

    def _compile(self, wanted: tuple[int, ...]) -> AsyncpgStatement:
        # RuleSql only ever subtracts whole days from `now` and compares the member's id, which
        # SQL parameters support as well as Python values: so both stay parameters.
        now = bindparam("now", value=datetime.min, type_=DateTime(timezone=True))
        member = bindparam("member_id", value=0, type_=BigInteger())
        sql = RuleSql(dialect="postgresql", now=cast(datetime, now), rules=self._rules)
        stmt = membership(sql, cast(int, member), [(i, self._rules[i]) for i in wanted])
        compiled = for_asyncpg(stmt)
        # Every column starts `members.id = <member>`: the member's id is $1, which lets the
        # direct path put this statement in its own read of the member (also $1).
        assert compiled.names[0] == "member_id", compiled.names
        return compiled


async def early_access_for(
    session: AsyncSession,
    *,
    tier_id: int,
    member_id: int,
    early_tier_id: int | None,
    early_segment_id: int | None,
    now: datetime,
) -> bool:
    """Whether the member is in a reward's early-access audience: at or above the tier (by
    threshold: a retired tier is still the bar), or in the segment."""
    if early_tier_id is not None:
        bar = await session.get(Tier, early_tier_id)
        current = await session.get(Tier, tier_id)
        if bar is not None and current is not None and current.threshold >= bar.threshold:
            return True
    if early_segment_id is not None:
        return early_segment_id in await segments_containing(
            session, member_id, [early_segment_id], now
        )
    return False


async def retarget(
    session: AsyncSession, target: Promotion | Reward | Challenge, segment_id: int | None
) -> None:
    """Target `target` at another segment (None: at everyone), from an update input."""
    await check_segment(session, segment_id, ["input", "segmentId"])
    target.segment_id = segment_id


async def check_segment(session: AsyncSession, segment_id: int | None, field: list[str]) -> None:
    """A segment an input names must exist (NOT_FOUND on that field)."""
    if segment_id is not None and await session.get(Segment, segment_id) is None:
        raise NotFound("no such segment", field=field)
