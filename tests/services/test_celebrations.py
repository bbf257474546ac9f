"""Birthdays and anniversaries: paid once each by the sweep, even twice or concurrently, and
caught up after a missed day."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import EntryKind, LedgerEntry
from models.engine import session_factory
from services import members
from services.celebrations import (
    anniversary_candidates,
    birthday_candidates,
    pay_celebrations,
)
from services.clock import ManualClock
from services.ledger.sweeps import sweep
from services.program import create_tier
from tests.services.helpers import assert_balances_match_ledger, configure


def at(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


async def enroll(
    sessions: async_sessionmaker[AsyncSession],
    clock: ManualClock,
    name: str,
    birthday: date | None = None,
) -> int:
    async with sessions.begin() as session:
        member = await members.enroll(
            session,
            email=f"{name}@example.com",
            display_name=name.title(),
            now=clock.now(),
            birthday=birthday,
        )
    return member.id


async def celebrations(
    sessions: async_sessionmaker[AsyncSession], member_id: int | None = None
) -> list[tuple[int, EntryKind, int, str | None]]:
    """(member, kind, points, reference) of every birthday and anniversary entry."""
    async with sessions() as session:
        stmt = select(LedgerEntry).where(
            LedgerEntry.kind.in_([EntryKind.BIRTHDAY, EntryKind.ANNIVERSARY])
        )
        if member_id is not None:
            stmt = stmt.where(LedgerEntry.member_id == member_id)
        entries = await session.scalars(stmt.order_by(LedgerEntry.id))
        return [(e.member_id, e.kind, e.points, e.reference) for e in entries]


async def test_birthday_is_paid_on_the_day_and_a_second_sweep_pays_nothing(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, birthday_points=100)
    ann = await enroll(sessions, clock, "ann", date(1990, 1, 10))
    await enroll(sessions, clock, "bob", date(1990, 3, 1))
    await enroll(sessions, clock, "cy")  # no birthday given

    # the day before: nothing
    clock.set(at(2026, 1, 9, 23))
    assert (await pay_celebrations(sessions, clock.now())).birthdays_paid == 0

    # the birthday, at midnight UTC: the full sweep pays it
    clock.set(at(2026, 1, 10))
    report = await sweep(sessions, clock.now())
    assert (report.birthdays_paid, report.anniversaries_paid) == (1, 0)
    assert await celebrations(sessions) == [(ann, EntryKind.BIRTHDAY, 100, "birthday:2026")]
    async with sessions() as session:
        entry = await session.scalar(select(LedgerEntry).where(LedgerEntry.member_id == ann))
        assert entry is not None and entry.description == "Happy birthday!"
    member = await assert_balances_match_ledger(sessions, ann)
    assert (member.available, member.lifetime_earned) == (100, 100)

    # run again, later that day and the next: paid once
    clock.advance(timedelta(hours=12))
    assert (await sweep(sessions, clock.now())).birthdays_paid == 0
    clock.advance(timedelta(days=1))
    assert (await pay_celebrations(sessions, clock.now())).birthdays_paid == 0
    assert len(await celebrations(sessions)) == 1
    await assert_balances_match_ledger(sessions, ann)


async def test_two_sweeps_at_once_pay_each_birthday_once(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    # two "processes": separate session factories, so separate connections and transactions
    first, second = session_factory(pg), session_factory(pg)
    await configure(first, birthday_points=100, anniversary_points=0)
    ids = [await enroll(first, clock, f"m{i}", date(1980 + i, 1, 10)) for i in range(8)]

    clock.set(at(2026, 1, 10, 6))
    reports = await asyncio.gather(
        pay_celebrations(first, clock.now()),
        pay_celebrations(second, clock.now()),
        pay_celebrations(first, clock.now()),
    )
    assert sum(r.birthdays_paid for r in reports) == len(ids)
    paid = await celebrations(first)
    assert sorted(m for m, _, _, _ in paid) == ids
    for member_id in ids:
        member = await assert_balances_match_ledger(first, member_id)
        assert member.available == 100


async def test_a_missed_day_is_caught_up_once_and_next_year_pays_again(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, birthday_points=100)
    ann = await enroll(sessions, clock, "ann", date(1990, 1, 10))

    # no sweep ran on the day: three days later it is caught up, once
    clock.set(at(2026, 1, 13, 9))
    short = await pay_celebrations(sessions, clock.now(), lookback=timedelta(days=2))
    assert short.birthdays_paid == 0  # only Jan 12 and 13 looked at
    assert (await pay_celebrations(sessions, clock.now())).birthdays_paid == 1
    assert (await sweep(sessions, clock.now())).birthdays_paid == 0
    assert await celebrations(sessions) == [(ann, EntryKind.BIRTHDAY, 100, "birthday:2026")]

    # past the lookback, a birthday is no longer owed
    clock.set(at(2027, 2, 10, 12))  # Jan 10 2027 is 31 days and 12 hours ago
    assert (await pay_celebrations(sessions, clock.now())).birthdays_paid == 0

    # the year after, paid again
    clock.set(at(2028, 1, 10, 12))
    assert (await sweep(sessions, clock.now())).birthdays_paid == 1
    assert (await sweep(sessions, clock.now())).birthdays_paid == 0
    assert [r for _, _, _, r in await celebrations(sessions)] == ["birthday:2026", "birthday:2028"]
    member = await assert_balances_match_ledger(sessions, ann)
    assert member.available == 200


async def test_a_feb_29_birthday_is_celebrated_on_feb_28_in_other_years(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, birthday_points=100)
    leapling = await enroll(sessions, clock, "leap", date(2000, 2, 29))
    feb28 = await enroll(sessions, clock, "feb", date(2001, 2, 28))
    march = await enroll(sessions, clock, "mar", date(2001, 3, 1))

    clock.set(at(2026, 2, 27, 12))
    assert (await pay_celebrations(sessions, clock.now())).birthdays_paid == 0
    clock.set(at(2026, 2, 28, 12))
    assert (await pay_celebrations(sessions, clock.now())).birthdays_paid == 2
    clock.set(at(2026, 3, 1, 12))
    assert (await pay_celebrations(sessions, clock.now())).birthdays_paid == 1
    assert [m for m, _, _, _ in await celebrations(sessions)] == [leapling, feb28, march]

    # in a leap year, on the day itself
    clock.set(at(2028, 2, 28, 12))
    assert (await pay_celebrations(sessions, clock.now())).birthdays_paid == 1  # Feb 28's
    clock.set(at(2028, 2, 29, 12))
    assert (await pay_celebrations(sessions, clock.now())).birthdays_paid == 1
    assert await celebrations(sessions, leapling) == [
        (leapling, EntryKind.BIRTHDAY, 100, "birthday:2026"),
        (leapling, EntryKind.BIRTHDAY, 100, "birthday:2028"),
    ]


async def test_a_birthday_before_joining_is_not_paid(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, birthday_points=100)
    # it is Jan 5 2026: Jan 2 was before joining; joining on one's birthday counts
    early = await enroll(sessions, clock, "early", date(1990, 1, 2))
    today = await enroll(sessions, clock, "today", date(1990, 1, 5))

    assert (await pay_celebrations(sessions, clock.now())).birthdays_paid == 1
    clock.advance(timedelta(days=3))
    assert (await pay_celebrations(sessions, clock.now())).birthdays_paid == 0
    assert await celebrations(sessions) == [(today, EntryKind.BIRTHDAY, 100, "birthday:2026")]

    clock.set(at(2027, 1, 2, 8))
    assert (await pay_celebrations(sessions, clock.now())).birthdays_paid == 1
    assert await celebrations(sessions, early) == [
        (early, EntryKind.BIRTHDAY, 100, "birthday:2027")
    ]


async def test_anniversaries_are_paid_once_each_year(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, anniversary_points=50)
    ann = await enroll(sessions, clock, "ann")  # joined 2026-01-05 12:00 UTC
    assert (await pay_celebrations(sessions, clock.now())).anniversaries_paid == 0

    clock.set(at(2027, 1, 4, 23))
    assert (await pay_celebrations(sessions, clock.now())).anniversaries_paid == 0
    clock.set(at(2027, 1, 5))
    first = await sweep(sessions, clock.now())
    assert (first.birthdays_paid, first.anniversaries_paid) == (0, 1)
    assert (await sweep(sessions, clock.now())).anniversaries_paid == 0

    # the second one, caught up two days late, once
    clock.set(at(2028, 1, 7, 3))
    assert (await pay_celebrations(sessions, clock.now())).anniversaries_paid == 1
    assert (await pay_celebrations(sessions, clock.now())).anniversaries_paid == 0
    assert await celebrations(sessions) == [
        (ann, EntryKind.ANNIVERSARY, 50, "anniversary:1"),
        (ann, EntryKind.ANNIVERSARY, 50, "anniversary:2"),
    ]
    async with sessions() as session:
        descriptions = await session.scalars(
            select(LedgerEntry.description).where(LedgerEntry.kind == EntryKind.ANNIVERSARY)
        )
        assert list(descriptions) == [
            "Happy anniversary: 1 year with us!",
            "Happy anniversary: 2 years with us!",
        ]
    member = await assert_balances_match_ledger(sessions, ann)
    assert member.available == 100

    # joined on Feb 29: celebrated on Feb 28 the next year
    clock.set(at(2028, 2, 29, 18))
    leap = await enroll(sessions, clock, "leap")
    clock.set(at(2029, 2, 28, 1))
    assert (await pay_celebrations(sessions, clock.now())).anniversaries_paid == 1
    assert await celebrations(sessions, leap) == [
        (leap, EntryKind.ANNIVERSARY, 50, "anniversary:1")
    ]


async def test_zero_settings_pay_nothing(engine: AsyncEngine, clock: ManualClock) -> None:
    sessions = session_factory(engine)
    await configure(sessions, birthday_points=0, anniversary_points=0)
    await enroll(sessions, clock, "ann", date(1990, 1, 5))
    clock.set(at(2027, 1, 5, 12))  # her birthday and her first anniversary
    report = await sweep(sessions, clock.now())
    assert (report.birthdays_paid, report.anniversaries_paid) == (0, 0)
    assert await celebrations(sessions) == []


async def test_celebration_points_count_for_the_tier(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    await configure(sessions, birthday_points=100, anniversary_points=50)
    async with sessions.begin() as session:
        gold = await create_tier(session, name="Gold", threshold=150, multiplier=1.5, benefits=[])
    ann = await enroll(sessions, clock, "ann", date(1990, 1, 5))
    clock.set(at(2027, 1, 5, 12))
    report = await pay_celebrations(sessions, clock.now())
    assert (report.birthdays_paid, report.anniversaries_paid) == (1, 1)
    member = await assert_balances_match_ledger(sessions, ann)
    assert member.qualifying_points == 150  # the birthday and the first anniversary
    assert member.tier_id == gold.id


async def test_on_postgresql_the_sweep_finds_members_through_the_day_indexes(
    pg: AsyncEngine,
) -> None:
    # The indexes' expressions (migration 0009) must stay those the sweep's statements compile.
    days = [date(2026, 2, 27), date(2026, 2, 28)]
    async with pg.connect() as connection:
        await connection.execute(text("SET enable_seqscan = off"))
        for statement, index in (
            (birthday_candidates(2026, days), "ix_members_birthday_month_day"),
            (anniversary_candidates(2026, days), "ix_members_joined_month_day"),
        ):
            sql = statement.compile(pg.sync_engine, compile_kwargs={"literal_binds": True})
            plan = (await connection.execute(text(f"EXPLAIN {sql}"))).scalars().all()
            assert any(index in line for line in plan), plan
