"""Celebrations: `birthdayPoints` once a year on a member's birthday, and `anniversaryPoints` on
each anniversary of enrolment.

They are paid by the scheduled sweep rather than by any request, so a run pays every
celebration that fell in the last `lookback` (downtime, or a sweep that failed, is caught up
on the next run). Each payment claims the key (member, occasion) in the same transaction as its
entry: running twice, or on two processes at once, pays once.

Days are UTC calendar days. A Feb 29 birthday or enrolment is celebrated on Feb 28 in other
years, so nobody goes without for three years.
"""

from __future__ import annotations

import calendar
import enum
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    Select,
    String,
    and_,
    cast,
    literal,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from models import EntryKind, IdempotencyRecord, Member, Program
from models.base import UtcDateTime
from services.catalog import Catalog, current_catalog, load_catalog
from services.errors import DomainError
from services.gamification import challenges
from services.ledger.entries import credit, lock_member, settle
from services.ledger.idempotency import claim, record_result
from services.tiers import refresh_tier

log = logging.getLogger("laurel.celebrations")

BATCH = 500
DEFAULT_LOOKBACK = timedelta(days=31)
# Within a year a window holds each member's birthday (and anniversary) at most once.
MAX_LOOKBACK = timedelta(days=365)


class Occasion(enum.StrEnum):
    BIRTHDAY = "birthday"
    ANNIVERSARY = "anniversary"


@dataclass(slots=True)
class CelebrationReport:
    birthdays_paid: int = 0
    anniversaries_paid: int = 0


def scope(member_id: int) -> str:
    """The idempotency scope of a member's celebrations (keys: `birthday:<year>`,
    `anniversary:<n>`)."""
    return f"celebration:{member_id}"


def celebrated_on(month: int, day: int, year: int) -> date:
    """The day a birthday or enrolment on `month`/`day` is celebrated in `year`."""
    if (month, day) == (2, 29) and not calendar.isleap(year):
        return date(year, 2, 28)
    return date(year, month, day)


async def pay_celebrations(
    sessions: async_sessionmaker[AsyncSession],
    now: datetime,
    *,
    lookback: timedelta = DEFAULT_LOOKBACK,
) -> CelebrationReport:
    """Pay every birthday and anniversary that fell on a UTC day in (now - lookback, now] and
    is not paid yet, one member per transaction."""
    if not timedelta(0) < lookback <= MAX_LOOKBACK:
        raise ValueError(f"lookback must be more than 0 and at most {MAX_LOOKBACK.days} days")
    now = now.astimezone(UTC)
    first, last = (now - lookback).date() + timedelta(days=1), now.date()
    window = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    report = CelebrationReport()
    async with sessions() as session:
        catalog = await load_catalog(session, now)
    run = _Run(sessions, now, catalog, report)
    by_year: dict[int, list[date]] = defaultdict(list)
    for day in window:
        by_year[day.year].append(day)
    for year, days in sorted(by_year.items()):
        if catalog.program.birthday_points > 0:
            await run.birthdays(year, days)
        if catalog.program.anniversary_points > 0:
            await run.anniversaries(year, days)
    return report


class _MonthDay(FunctionElement[int]):
    """`month * 100 + day` of a date, or of a UTC timestamp's UTC date: compares a calendar day
    whatever the year, on both backends."""

    type = Integer()
    inherit_cache = True


class _Year(FunctionElement[int]):
    """The year of a UTC timestamp's UTC date."""

    type = Integer()
    inherit_cache = True


def _argument(element: FunctionElement[Any]) -> ColumnElement[Any]:
    [argument] = element.clauses.clauses
    assert isinstance(argument, ColumnElement)
    return argument


def _pg_day(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    # A timestamptz is taken in UTC, not in the session's time zone.
    argument = _argument(element)
    sql = compiler.process(argument, **kw)
    return f"({sql} AT TIME ZONE 'UTC')" if isinstance(argument.type, UtcDateTime) else sql


@compiles(_MonthDay, "postgresql")
def _month_day_pg(element: _MonthDay, compiler: SQLCompiler, **kw: Any) -> str:
    day = _pg_day(element, compiler, **kw)
    return f"CAST(EXTRACT(MONTH FROM {day}) * 100 + EXTRACT(DAY FROM {day}) AS INTEGER)"


@compiles(_Year, "postgresql")
def _year_pg(element: _Year, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(EXTRACT(YEAR FROM {_pg_day(element, compiler, **kw)}) AS INTEGER)"


# SQLite keeps dates as 'YYYY-MM-DD' and UtcDateTime as naive UTC 'YYYY-MM-DD HH:MM:SS' text.
@compiles(_MonthDay, "sqlite")
def _month_day_sqlite(element: _MonthDay, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(strftime('%m%d', {compiler.process(_argument(element), **kw)}) AS INTEGER)"


@compiles(_Year, "sqlite")
def _year_sqlite(element: _Year, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(strftime('%Y', {compiler.process(_argument(element), **kw)}) AS INTEGER)"


def _month_days(day: date) -> list[int]:
    """The `_MonthDay` values celebrated on `day` (Feb 28 also stands for Feb 29)."""
    values = [day.month * 100 + day.day]
    if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
        values.append(229)
    return values


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _unclaimed(key: ColumnElement[str] | str) -> ColumnElement[bool]:
    """No claim of `key` for the member yet. A scalar subquery, not NOT EXISTS: the database
    cannot turn it into a join, so it stays one probe of the (scope, key) index per candidate;
    an anti-join planned on stale statistics scanned every claim once per member."""
    claimed = (
        select(IdempotencyRecord.id)
        .where(
            IdempotencyRecord.scope == literal("celebration:", String) + cast(Member.id, String),
            IdempotencyRecord.key == key,
        )
        .scalar_subquery()
    )
    return claimed.is_(None)


def birthday_candidates(year: int, days: Sequence[date]) -> Select[Any]:
    """Members whose birthday is celebrated on one of `days` (all in `year`) and who may not
    be paid for `year` yet (found through `ix_members_birthday_month_day` on PostgreSQL)."""
    month_day = _MonthDay(Member.birthday)
    # Members who joined before the window cannot have joined after their birthday in it.
    joined_by_then = or_(
        Member.joined_at < _midnight(days[0]),
        *(
            and_(
                month_day.in_(_month_days(day)),
                Member.joined_at < _midnight(day + timedelta(days=1)),
            )
            for day in days
        ),
    )
    return select(Member.id, Member.birthday, Member.joined_at).where(
        month_day.in_([v for day in days for v in _month_days(day)]),
        joined_by_then,
        _unclaimed(f"birthday:{year}"),
    )


def anniversary_candidates(year: int, days: Sequence[date]) -> Select[Any]:
    """Members who joined on one of `days`' month and day before `year`, perhaps not paid for
    that year count (found through `ix_members_joined_month_day` on PostgreSQL)."""
    years = literal(year, Integer) - _Year(Member.joined_at)
    return select(Member.id, Member.joined_at).where(
        _MonthDay(Member.joined_at).in_([v for day in days for v in _month_days(day)]),
        Member.joined_at < _midnight(date(year, 1, 1)),
        Member.erased_at.is_(None),  # an erased member is celebrated no more
        _unclaimed(literal("anniversary:", String) + cast(years, String)),
    )


@dataclass(slots=True)
class _Run:
    sessions: async_sessionmaker[AsyncSession]
    now: datetime
    catalog: Catalog
    report: CelebrationReport

    async def birthdays(self, year: int, days: Sequence[date]) -> None:
        """Members whose birthday falls on one of `days` (all in `year`), celebrated on or
        after the day they joined, and not paid for `year`."""
        stmt = birthday_candidates(year, days)
        async for member_id, birthday, joined_at in self._candidates(stmt):
            assert birthday is not None
            day = celebrated_on(birthday.month, birthday.day, year)
            if day in days and day >= joined_at.date():
                paid = await self._pay(member_id, Occasion.BIRTHDAY, f"birthday:{year}")
                self.report.birthdays_paid += int(paid)

    async def anniversaries(self, year: int, days: Sequence[date]) -> None:
        """Members who joined on one of `days`' month/day in an earlier year, not yet paid
        for that year count."""
        stmt = anniversary_candidates(year, days)
        async for member_id, joined_at in self._candidates(stmt):
            joined = joined_at.astimezone(UTC).date()
            if joined.year < year and celebrated_on(joined.month, joined.day, year) in days:
                key = f"anniversary:{year - joined.year}"
                paid = await self._pay(member_id, Occasion.ANNIVERSARY, key)
                self.report.anniversaries_paid += int(paid)

    async def _candidates(self, stmt: Select[Any]) -> AsyncIterator[Row[Any]]:
        """Rows of `stmt` in batches by member id, each batch read in a short session."""
        after = 0
        while True:
            async with self.sessions() as session:
                rows = (
                    await session.execute(
                        stmt.where(Member.id > after).order_by(Member.id).limit(BATCH)
                    )
                ).all()
            for row in rows:
                yield row
            if len(rows) < BATCH:
                return
            after = rows[-1][0]

    async def _pay(self, member_id: int, occasion: Occasion, key: str) -> bool:
        """One payment in its own transaction; False when it was paid already (by an earlier
        run or a concurrent sweep) or the setting is now 0."""
        try:
            async with self.sessions.begin() as session:
                self.catalog = catalog = await current_catalog(session, self.catalog, self.now)
                program = catalog.program
                points = _points(program, occasion)
                if points <= 0:
                    return False
                # A concurrent claim of the same key waits here until the other one commits.
                claimed = await claim(
                    session, scope=scope(member_id), key=key, request={}, now=self.now
                )
                if claimed.first_use is not None:
                    return False
                member = await lock_member(session, member_id)
                await settle(session, member, self.now)
                entry = credit(
                    session,
                    member,
                    program,
                    kind=_KINDS[occasion],
                    points=points,
                    now=self.now,
                    description=_description(occasion, key),
                    reference=key,
                )
                if catalog.gamified_at(self.now):  # the points count for POINTS_EARNED goals
                    await session.flush()
                    await challenges.after_change(session, member, program, self.now)
                await refresh_tier(session, member, program, catalog.tiers, self.now)
                await session.flush()
                await record_result(session, claimed, entry_id=entry.id)
                return True
        except DomainError as exc:
            # e.g. a balance at its ceiling: rolled back, so retried on the next run.
            log.warning("%s %s of member %s not paid: %s", occasion, key, member_id, exc)
            return False


_KINDS = {Occasion.BIRTHDAY: EntryKind.BIRTHDAY, Occasion.ANNIVERSARY: EntryKind.ANNIVERSARY}


def _points(program: Program, occasion: Occasion) -> int:
    if occasion is Occasion.BIRTHDAY:
        return program.birthday_points
    return program.anniversary_points


def _description(occasion: Occasion, key: str) -> str:
    if occasion is Occasion.BIRTHDAY:
        return "Happy birthday!"
    years = int(key.rsplit(":", 1)[1])
    return f"Happy anniversary: {years} year{'s' if years != 1 else ''} with us!"
