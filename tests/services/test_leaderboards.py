"""Leaderboards: the database's answer, the Redis boards that must agree with it exactly, and
the facade's fallback when Redis is away. Real PostgreSQL, real SQLite, real Redis.

Every test's Redis keys live under a prefix of its own, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import event, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import (
    QUALIFYING_KINDS,
    EntryKind,
    EntryStatus,
    LeaderboardCount,
    LedgerEntry,
    Member,
    Tier,
)
from models.engine import read_session_factory, session_factory
from services.clock import ManualClock
from services.leaderboards import (
    Board,
    Leaderboards,
    LeaderboardStore,
    Period,
    Standing,
    board_from_database,
    encode_member,
    period_end,
    period_label,
    period_points,
    period_start,
    ranked_members,
)
from services.leaderboards.snapshot import Ranking
from services.ledger.purchases import record_purchase, refund_purchase
from services.ledger.sweeps import sweep
from services.members import enroll
from tests.services.helpers import new_member, restate_scores

REDIS_URL = os.environ.get("LAUREL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
Sessions = async_sessionmaker[AsyncSession]


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis_client: Redis) -> AsyncIterator[LeaderboardStore]:
    lb_store = LeaderboardStore(redis_client, prefix=f"laureltest:{uuid4().hex}:")
    yield lb_store
    leftovers = [key async for key in redis_client.scan_iter(match=f"{lb_store.prefix}*")]
    if leftovers:
        await redis_client.delete(*leftovers)


def unreachable_redis() -> Redis:
    """A client for a port nobody listens on, failing fast (no retries, short timeouts)."""
    return Redis(
        host="127.0.0.1",
        port=1,
        socket_connect_timeout=0.2,
        socket_timeout=0.2,
        retry=Retry(NoBackoff(), 0),
    )


async def buy(
    sessions: Sessions, clock: ManualClock, member_id: int, amount: float, order: str | None = None
) -> str:
    order_id = order or f"order-{uuid4().hex}"
    async with sessions.begin() as session:
        await record_purchase(
            session, member_id=member_id, order_id=order_id, amount=amount, now=clock.now()
        )
    return order_id


async def refund(
    sessions: Sessions, clock: ManualClock, order_id: str, amount: float | None
) -> None:
    async with sessions.begin() as session:
        await refund_purchase(
            session,
            order_id=order_id,
            refund_id=f"refund-{uuid4().hex}",
            amount=amount,
            now=clock.now(),
        )


async def db_board(
    sessions: Sessions,
    period: Period,
    clock: ManualClock,
    *,
    first: int = 10,
    member_id: int | None = None,
) -> Board:
    async with sessions() as session:
        return await board_from_database(
            session, period, clock.now(), first=first, member_id=member_id
        )


async def redis_board(
    store: LeaderboardStore,
    period: Period,
    clock: ManualClock,
    *,
    first: int = 10,
    member_id: int | None = None,
) -> Board:
    board = await store.board(period, clock.now(), first=first, member_id=member_id)
    assert board is not None, "the board is built"
    return board


def shape(board: Board) -> list[tuple[int, int, int]]:
    return [(s.member_id, s.points, s.rank) for s in board.entries]


async def four_members(sessions: Sessions, clock: ManualClock) -> list[int]:
    """ann 300, bob 200, cy 200, dee 100, eve nothing: ranks 1, 2, 2, 4."""
    ids = [await new_member(sessions, clock, name) for name in ("ann", "bob", "cy", "dee", "eve")]
    for member_id, amount in zip(ids, (300, 200, 200, 100), strict=False):
        await buy(sessions, clock, member_id, amount)
    return ids


# ---------------------------------------------------------------- periods


def test_periods_are_utc_months_and_iso_weeks() -> None:
    now = datetime(2026, 1, 1, 9, 30, tzinfo=UTC)  # a Thursday in ISO week 2026-W01
    assert period_start(Period.ALL_TIME, now) is None and period_end(Period.ALL_TIME, now) is None
    assert period_start(Period.MONTHLY, now) == datetime(2026, 1, 1, tzinfo=UTC)
    assert period_end(Period.MONTHLY, now) == datetime(2026, 2, 1, tzinfo=UTC)
    assert period_start(Period.WEEKLY, now) == datetime(2025, 12, 29, tzinfo=UTC)
    assert period_end(Period.WEEKLY, now) == datetime(2026, 1, 5, tzinfo=UTC)
    assert period_label(Period.WEEKLY, now) == "WEEKLY:2026-W01"
    assert period_label(Period.MONTHLY, now) == "MONTHLY:2026-01"
    december = datetime(2025, 12, 31, 23, 59, tzinfo=UTC)
    assert period_end(Period.MONTHLY, december) == datetime(2026, 1, 1, tzinfo=UTC)
    # Another zone's wall clock is converted: this is still Sunday in UTC.
    sunday = datetime(2026, 1, 4, 23, 0, tzinfo=UTC).astimezone(
        datetime.now(UTC).astimezone().tzinfo
    )
    assert period_start(Period.WEEKLY, sunday) == datetime(2025, 12, 29, tzinfo=UTC)
    with pytest.raises(ValueError):
        period_start(Period.WEEKLY, datetime(2026, 1, 1))  # naive


# ---------------------------------------------------------------- the database (both backends)


async def test_database_board_ranks_ties_on_both_backends(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    ann, bob, cy, dee, eve = await four_members(sessions, clock)
    board = await db_board(sessions, Period.ALL_TIME, clock, member_id=cy)
    assert shape(board) == [(ann, 300, 1), (bob, 200, 2), (cy, 200, 2), (dee, 100, 4)]
    assert [s.display_name for s in board.entries] == ["Ann", "Bob", "Cy", "Dee"]
    assert board.me == Standing(cy, "Cy", 200, 2)
    assert board.total_ranked == 4

    # A cut inside a tie lists the lower id; the unranked member has no standing.
    cut = await db_board(sessions, Period.WEEKLY, clock, first=2, member_id=eve)
    assert shape(cut) == [(ann, 300, 1), (bob, 200, 2)]
    assert cut.me is None and cut.total_ranked == 4
    # Only my rank (first = 0), ranked or not: the total is still counted.
    mine = await db_board(sessions, Period.MONTHLY, clock, first=0, member_id=dee)
    assert mine.entries == [] and mine.me == Standing(dee, "Dee", 100, 4)
    assert mine.total_ranked == 4
    nobody = await db_board(sessions, Period.MONTHLY, clock, first=0, member_id=eve)
    assert nobody.me is None and nobody.total_ranked == 4

    async with sessions() as session:
        figures = await period_points(session, [ann, eve, 999_999], clock.now())
    assert set(figures) == {ann, eve}
    assert figures[ann].points == {Period.ALL_TIME: 300, Period.MONTHLY: 300, Period.WEEKLY: 300}
    assert figures[ann].display_name == "Ann" and figures[ann].version > 0
    assert figures[eve].points == dict.fromkeys(Period, 0) and figures[eve].version == 0


async def test_database_board_counts_reversals_and_periods_on_both_backends(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    ann = await new_member(sessions, clock, "ann")
    bob = await new_member(sessions, clock, "bob")
    clock.set(datetime(2025, 12, 20, 10, tzinfo=UTC))
    await buy(sessions, clock, ann, 500)
    clock.set(datetime(2026, 1, 5, 0, 0, tzinfo=UTC))  # the first instant of 2026-W02
    order = await buy(sessions, clock, ann, 100)
    await buy(sessions, clock, bob, 80)
    await refund(sessions, clock, order, 50)  # ann: -50 this week

    assert shape(await db_board(sessions, Period.ALL_TIME, clock)) == [(ann, 550, 1), (bob, 80, 2)]
    assert shape(await db_board(sessions, Period.MONTHLY, clock)) == [(bob, 80, 1), (ann, 50, 2)]
    clock.advance(timedelta(days=7))
    empty = await db_board(sessions, Period.WEEKLY, clock, member_id=ann)
    assert empty == Board(Period.WEEKLY, [], None, 0)


# ---------------------------------------------------------------- Redis against the database


async def test_ties_rank_alike_from_redis_and_from_the_database(
    pg: AsyncEngine, clock: ManualClock, store: LeaderboardStore
) -> None:
    sessions = session_factory(pg)
    ann, bob, cy, dee, eve = await four_members(sessions, clock)
    for period in Period:
        assert await store.rebuild(sessions, period, clock.now()) == 4
        for first in (0, 1, 2, 3, 10):
            for me in (ann, cy, dee, eve, None):
                expected = await db_board(sessions, period, clock, first=first, member_id=me)
                assert await redis_board(store, period, clock, first=first, member_id=me) == (
                    expected
                )
    board = await redis_board(store, Period.WEEKLY, clock, member_id=bob)
    assert [s.rank for s in board.entries] == [1, 2, 2, 4]
    assert board.me == Standing(bob, "Bob", 200, 2)

    # The same board written member by member (apply) instead of rebuilt.
    other = LeaderboardStore(store.redis, prefix=f"{store.prefix}applied:")
    async with sessions() as session:
        await other.apply(session, [eve, dee, cy, bob, ann], clock.now())
    await store.redis.set(other.keys(Period.ALL_TIME, clock.now()).built, "1")
    assert await redis_board(other, Period.ALL_TIME, clock, member_id=cy) == await db_board(
        sessions, Period.ALL_TIME, clock, member_id=cy
    )


async def test_any_display_name_survives_redis(
    pg: AsyncEngine, clock: ManualClock, store: LeaderboardStore
) -> None:
    sessions = session_factory(pg)
    name = 'Zoë "🏆" \\ / \t {} [] null'
    async with sessions.begin() as session:
        member = await enroll(session, email="zoe@example.com", display_name=name, now=clock.now())
    await buy(sessions, clock, member.id, 10)
    await store.rebuild(sessions, Period.ALL_TIME, clock.now())
    board = await redis_board(store, Period.ALL_TIME, clock, member_id=member.id)
    assert board.entries == [Standing(member.id, name, 10, 1)] and board.me == board.entries[0]


async def test_periods_roll_over(
    pg: AsyncEngine, clock: ManualClock, store: LeaderboardStore
) -> None:
    sessions = session_factory(pg)
    boards = Leaderboards(read_session_factory(pg), store, clock)
    ann = await new_member(sessions, clock, "ann")
    bob = await new_member(sessions, clock, "bob")
    clock.set(datetime(2025, 12, 20, 10, tzinfo=UTC))
    await buy(sessions, clock, ann, 100)  # last month
    boards.mark_dirty([ann])
    assert await boards.flush()
    clock.set(datetime(2026, 1, 5, 12, tzinfo=UTC))
    await buy(sessions, clock, bob, 40)
    boards.mark_dirty([bob])
    assert await boards.flush()

    async def both(period: Period) -> list[tuple[int, int, int]]:
        redis_answer = await boards.board(period, first=10, member_id=ann)
        assert redis_answer == await db_board(sessions, period, clock, member_id=ann)
        assert await store.is_built(period, clock.now())
        return shape(redis_answer)

    assert await both(Period.ALL_TIME) == [(ann, 100, 1), (bob, 40, 2)]
    assert await both(Period.MONTHLY) == [(bob, 40, 1)]
    assert await both(Period.WEEKLY) == [(bob, 40, 1)]

    clock.advance(timedelta(days=7))  # 2026-W03: a new weekly board, built on first read
    assert await both(Period.WEEKLY) == []
    await buy(sessions, clock, ann, 10)
    boards.mark_dirty([ann])
    assert await boards.flush()
    assert await both(Period.WEEKLY) == [(ann, 10, 1)]
    assert await both(Period.MONTHLY) == [(bob, 40, 1), (ann, 10, 2)]
    clock.set(datetime(2026, 2, 2, 8, tzinfo=UTC))  # February
    assert await both(Period.MONTHLY) == []
    assert await both(Period.ALL_TIME) == [(ann, 110, 1), (bob, 40, 2)]

    # Period boards expire 35 days after their period, by the application's clock.
    january = store.keys(Period.MONTHLY, datetime(2026, 1, 15, tzinfo=UTC))
    ttl = await store.redis.ttl(january.board)
    lifetime = (
        datetime(2026, 2, 1, tzinfo=UTC)
        + timedelta(days=35)
        - datetime(2026, 1, 12, 12, tzinfo=UTC)
    )
    assert abs(ttl - lifetime.total_seconds()) < 60
    assert await store.redis.ttl(store.keys(Period.ALL_TIME, clock.now()).board) == -1


async def test_the_sweep_prunes_counts_of_periods_long_over_on_both_backends(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    """Counts of months and weeks before the previous one go (nothing reads or writes them
    again); the current and the previous period stay, and every board reads as before."""
    sessions = session_factory(engine)
    ann = await new_member(sessions, clock, "ann")
    for day in (datetime(2025, 11, 20, tzinfo=UTC), datetime(2025, 12, 20, tzinfo=UTC)):
        clock.set(day)
        await buy(sessions, clock, ann, 100)
    clock.set(datetime(2026, 1, 14, 10, tzinfo=UTC))  # January, 2026-W03
    await buy(sessions, clock, ann, 40)

    async def periods() -> list[tuple[str, int]]:
        async with sessions() as session:
            found = await session.execute(
                select(LeaderboardCount.period, LeaderboardCount.period_key)
            )
            return [(str(period), int(key)) for period, key in found]

    gone = {("MONTHLY", 202511), ("WEEKLY", 202547), ("WEEKLY", 202551)}  # before 2026-W02
    old = [row for row in await periods() if row in gone]
    assert set(old) == gone
    before = [await db_board(sessions, period, clock, member_id=ann) for period in Period]
    report = await sweep(sessions, clock.now())
    assert report.leaderboard_counts_pruned == len(old)
    assert set(await periods()) == {
        ("ALL_TIME", 0),
        ("MONTHLY", 202512),
        ("MONTHLY", 202601),
        ("WEEKLY", 202603),
    }
    assert [await db_board(sessions, period, clock, member_id=ann) for period in Period] == before
    assert (await sweep(sessions, clock.now())).leaderboard_counts_pruned == 0


async def test_a_refund_lowers_points_and_rank(
    pg: AsyncEngine, clock: ManualClock, store: LeaderboardStore
) -> None:
    sessions = session_factory(pg)
    boards = Leaderboards(read_session_factory(pg), store, clock)
    ann = await new_member(sessions, clock, "ann")
    bob = await new_member(sessions, clock, "bob")
    order = await buy(sessions, clock, ann, 300)
    await buy(sessions, clock, bob, 200)
    assert (await boards.rank(Period.MONTHLY, ann)) == Standing(ann, "Ann", 300, 1)

    await refund(sessions, clock, order, 150)
    boards.mark_dirty([ann])
    assert await boards.flush()
    for period in Period:
        expected = await db_board(sessions, period, clock, member_id=ann)
        assert expected.me == Standing(ann, "Ann", 150, 2)
        assert await boards.board(period, first=10, member_id=ann) == expected

    await refund(sessions, clock, order, None)  # the rest: ann has earned nothing left
    boards.mark_dirty([ann])
    assert await boards.flush()
    board = await boards.board(Period.ALL_TIME, first=10, member_id=ann)
    assert board == await db_board(sessions, Period.ALL_TIME, clock, member_id=ann)
    assert board.me is None and shape(board) == [(bob, 200, 1)] and board.total_ranked == 1


async def test_apply_is_idempotent_and_a_stale_version_never_overwrites(
    pg: AsyncEngine, clock: ManualClock, store: LeaderboardStore
) -> None:
    sessions = session_factory(pg)
    ann, bob, *_ = await four_members(sessions, clock)
    await store.rebuild(sessions, Period.ALL_TIME, clock.now())
    before = await redis_board(store, Period.ALL_TIME, clock, member_id=ann)
    async with sessions() as session:
        assert await store.apply(session, [ann, bob], clock.now()) == 2
        assert await store.apply(session, [ann, bob], clock.now()) == 2  # same version: rewritten
        stale = await period_points(session, [ann], clock.now())  # read before ann's next earn
    assert await redis_board(store, Period.ALL_TIME, clock, member_id=ann) == before

    await buy(sessions, clock, ann, 50)
    async with sessions() as session:
        assert await store.apply(session, [ann], clock.now()) == 1
    fresh = await redis_board(store, Period.ALL_TIME, clock, member_id=ann)
    assert fresh.me == Standing(ann, "Ann", 350, 1)

    # A slower writer arrives with figures read before the earn: refused, nothing changes.
    assert await store.write(stale, clock.now()) == 0
    assert await redis_board(store, Period.ALL_TIME, clock, member_id=ann) == fresh
    for period in Period:
        assert (
            await store.redis.zscore(store.keys(period, clock.now()).board, encode_member(ann))
            == 350.0
        )
    assert fresh == await db_board(sessions, Period.ALL_TIME, clock, member_id=ann)


async def test_a_write_during_a_rebuild_is_not_lost(
    pg: AsyncEngine, clock: ManualClock, redis_client: Redis
) -> None:
    """The rebuild's snapshot is read, then another process commits and applies a change
    before the swap: the swap must not bring the old figure back."""
    sessions = session_factory(pg)
    _, bob, *_ = await four_members(sessions, clock)

    class RacedStore(LeaderboardStore):
        async def _snapshot(
            self, sessions: Sessions, period: Period, now: datetime
        ) -> Sequence[tuple[int, str, int, bool]]:
            rows = await super()._snapshot(sessions, period, now)
            await buy(sessions, clock, bob, 1000)  # committed after the snapshot ...
            other = LeaderboardStore(self.redis, prefix=self.prefix)
            async with sessions() as session:
                await other.apply(session, [bob], now)  # ... and applied before the swap
            return rows

    raced = RacedStore(redis_client, prefix=f"laureltest:{uuid4().hex}:")
    try:
        await LeaderboardStore(redis_client, prefix=raced.prefix).rebuild(
            sessions, Period.ALL_TIME, clock.now()
        )
        assert await raced.rebuild(sessions, Period.ALL_TIME, clock.now()) == 4
        board = await redis_board(raced, Period.ALL_TIME, clock, member_id=bob)
        assert board.me == Standing(bob, "Bob", 1200, 1)
        assert board == await db_board(sessions, Period.ALL_TIME, clock, member_id=bob)
        keys = raced.keys(Period.ALL_TIME, clock.now())
        assert not await redis_client.exists(keys.lock, keys.touched, keys.tmp)
    finally:
        await raced.drop()


async def test_rebuild_equals_the_database_on_random_data(
    pg: AsyncEngine, clock: ManualClock, store: LeaderboardStore
) -> None:
    sessions = session_factory(pg)
    rng = random.Random(20260105)
    members = 300
    async with sessions.begin() as session:
        tier_id = await session.scalar(select(Tier.id).order_by(Tier.threshold).limit(1))
        ids = list(
            (
                await session.scalars(
                    insert(Member).returning(Member.id, sort_by_parameter_order=True),
                    [
                        {
                            "email": f"m{i}@example.com",
                            "display_name": f"Member {i}",
                            "joined_at": clock.now() - timedelta(days=90),
                            "referral_code": f"RND{i:08d}",
                            "tier_id": tier_id,
                        }
                        for i in range(members)
                    ],
                )
            ).all()
        )
        kinds = [*EntryKind]
        entries = []
        for member_id in ids:
            for _ in range(rng.randint(0, 8)):
                kind = rng.choice(kinds)
                points = rng.choice((5, 10, 10, 20, 50, 100))  # few values: many ties
                if kind in (EntryKind.REVERSAL, EntryKind.REDEMPTION, EntryKind.EXPIRATION):
                    points = -points
                entries.append(
                    {
                        "member_id": member_id,
                        "kind": kind,
                        "status": rng.choice(
                            (
                                EntryStatus.POSTED,
                                EntryStatus.POSTED,
                                EntryStatus.PENDING,
                                EntryStatus.VOIDED,
                            )
                        ),
                        "points": points,
                        "description": "random",
                        # From two months ago to now, some exactly on the week's first instant.
                        "created_at": rng.choice(
                            (
                                clock.now() - timedelta(minutes=rng.randint(0, 90 * 24 * 60)),
                                datetime(2026, 1, 5, tzinfo=UTC),
                                datetime(2026, 1, 1, tzinfo=UTC) - timedelta(microseconds=1),
                            )
                        ),
                    }
                )
        await session.execute(insert(LedgerEntry), entries)
        # Written around the ledger's own code: keep the members' scores as `post` would.
        await restate_scores(session, clock.now())

    probes = [*rng.sample(ids, 12), 999_999, None]
    for period in Period:
        ranked = await store.rebuild(sessions, period, clock.now())
        full = await db_board(sessions, period, clock, first=members)
        names = {member_id: f"Member {i}" for i, member_id in enumerate(ids)}
        assert full == reference_board(entries, names, period, clock.now()), "the SQL is right"
        assert ranked == full.total_ranked > 20
        assert len({s.points for s in full.entries}) < ranked / 2  # many ties
        async with sessions() as session:
            ranking = Ranking.of(period, await ranked_members(session, period, clock.now()))
        for first in (0, 10, 100, members):
            for me in probes:
                expected = await db_board(sessions, period, clock, first=first, member_id=me)
                got = await redis_board(store, period, clock, first=first, member_id=me)
                assert got == expected, (period, first, me)
                assert ranking.board(first=first, member_id=me) == expected
        # Applying everyone again on top of the rebuild changes nothing.
        async with sessions() as session:
            await store.apply(session, ids, clock.now())
        assert await redis_board(store, period, clock, first=members) == full


def reference_board(
    entries: list[dict[str, Any]], names: dict[int, str], period: Period, now: datetime
) -> Board:
    """The contract's rule, computed naively in Python."""
    start, end = period_start(period, now), period_end(period, now)
    totals: dict[int, int] = {}
    for entry in entries:
        if entry["kind"] not in QUALIFYING_KINDS or entry["status"] is EntryStatus.VOIDED:
            continue
        if start is not None and end is not None and not start <= entry["created_at"] < end:
            continue
        totals[entry["member_id"]] = totals.get(entry["member_id"], 0) + entry["points"]
    ranked = sorted(((-p, m) for m, p in totals.items() if p > 0))
    standings = [
        Standing(m, names[m], -p, 1 + sum(1 for q, _ in ranked if q < p)) for p, m in ranked
    ]
    return Board(period, standings, None, len(standings))


# ---------------------------------------------------------------- the facade


async def test_a_missing_board_is_rebuilt_by_board(
    pg: AsyncEngine, clock: ManualClock, store: LeaderboardStore
) -> None:
    sessions = session_factory(pg)
    ann, *_ = await four_members(sessions, clock)
    # Two "processes" asking at once: one rebuilds under the lock, both answer alike.
    first = Leaderboards(read_session_factory(pg), store, clock)
    second = Leaderboards(
        read_session_factory(pg), LeaderboardStore(store.redis, prefix=store.prefix), clock
    )
    expected = await db_board(sessions, Period.ALL_TIME, clock, member_id=ann)
    answers = await asyncio.gather(
        *(b.board(Period.ALL_TIME, first=10, member_id=ann) for b in (first, second, first))
    )
    assert answers == [expected] * 3
    assert await store.is_built(Period.ALL_TIME, clock.now())

    # Redis lost its data (a restart without persistence): rebuilt again on the next read.
    assert await store.drop() > 0
    assert await store.board(Period.ALL_TIME, clock.now(), first=10, member_id=ann) is None
    assert await first.board(Period.ALL_TIME, first=10, member_id=ann) == expected
    assert await store.board(Period.ALL_TIME, clock.now(), first=10, member_id=ann) == expected
    assert await first.rebuild_all() == dict.fromkeys(Period, 4)


async def test_the_background_writer_applies_marked_members(
    pg: AsyncEngine, clock: ManualClock, store: LeaderboardStore
) -> None:
    sessions = session_factory(pg)
    boards = Leaderboards(read_session_factory(pg), store, clock, flush_seconds=0.02)
    _, bob, *_ = await four_members(sessions, clock)
    zed = await new_member(sessions, clock, "zed")
    await boards.rebuild_all()
    await boards.start()
    try:
        await buy(sessions, clock, zed, 1000)
        boards.mark_dirty([zed])
        board = None
        for _ in range(100):
            board = await store.board(Period.WEEKLY, clock.now(), first=1, member_id=None)
            if board is not None and board.entries[0].member_id == zed:
                break
            await asyncio.sleep(0.02)
        assert board == await db_board(sessions, Period.WEEKLY, clock, first=1)
        await buy(sessions, clock, bob, 5000)
        boards.mark_dirty([bob])
    finally:
        await boards.stop()  # flushes what is pending
    assert boards.pending == 0
    assert (await redis_board(store, Period.ALL_TIME, clock, first=1)).entries[0].member_id == bob


async def test_too_many_pending_members_are_dropped_and_boards_rebuilt(
    pg: AsyncEngine, clock: ManualClock, store: LeaderboardStore
) -> None:
    sessions = session_factory(pg)
    ids = await four_members(sessions, clock)
    boards = Leaderboards(read_session_factory(pg), store, clock, max_dirty=3)
    await boards.rebuild_all()
    await buy(sessions, clock, ids[4], 900)  # eve, not yet on the boards
    boards.mark_dirty(ids)
    assert boards.pending == 0  # over the bound: dropped ...
    assert await boards.flush()  # ... and the boards forgotten
    assert not await store.is_built(Period.ALL_TIME, clock.now())
    board = await boards.board(Period.ALL_TIME, first=1, member_id=None)  # rebuilt on read
    assert shape(board) == [(ids[4], 900, 1)]
    assert await store.is_built(Period.ALL_TIME, clock.now())


async def test_redis_unreachable_answers_from_the_database(
    pg: AsyncEngine, clock: ManualClock, store: LeaderboardStore, caplog: pytest.LogCaptureFixture
) -> None:
    sessions = session_factory(pg)
    ann, bob, *_ = await four_members(sessions, clock)
    await store.rebuild(sessions, Period.ALL_TIME, clock.now())
    broken = unreachable_redis()
    boards = Leaderboards(
        read_session_factory(pg),
        LeaderboardStore(broken, prefix=store.prefix),
        clock,
        retry_seconds=0,
    )
    caplog.set_level(logging.WARNING, logger="laurel.leaderboards")
    try:
        for period in Period:
            expected = await db_board(sessions, period, clock, member_id=ann)
            assert await boards.board(period, first=10, member_id=ann) == expected
        assert await boards.rank(Period.ALL_TIME, bob) == Standing(bob, "Bob", 200, 2)

        await buy(sessions, clock, bob, 500)
        boards.mark_dirty([bob])  # does not raise; bob is kept for later
        boards.mark_dirty(iter([ann]))
        await boards.start()
        assert not await boards.flush()
        assert boards.pending == 2
        await boards.stop(grace_seconds=0.5)  # best effort: nothing raised
        assert boards.pending == 2
        outage = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(outage) == 1, "logged once per outage"

        # Redis is back (here: a working client): the kept members are written.
        assert (await redis_board(store, Period.ALL_TIME, clock, member_id=bob)).me == Standing(
            bob, "Bob", 200, 2
        )
        boards.store = store
        assert await boards.flush() and boards.pending == 0
        assert (await redis_board(store, Period.ALL_TIME, clock, member_id=bob)).me == Standing(
            bob, "Bob", 700, 1
        )
        assert await boards.rank(Period.ALL_TIME, bob) == Standing(bob, "Bob", 700, 1)
        assert any("back after" in r.getMessage() for r in caplog.records)
    finally:
        await broken.aclose()


async def test_during_an_outage_the_database_ranks_once_per_interval(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    """Fallback answers share one computation per board for a few seconds: an outage must not
    cost a ledger aggregation per request."""
    sessions = session_factory(pg)
    ann, bob, *_ = await four_members(sessions, clock)
    broken = unreachable_redis()
    boards = Leaderboards(
        read_session_factory(pg),
        LeaderboardStore(broken, prefix=f"laureltest:{uuid4().hex}:"),
        clock,
        fallback_cache_seconds=60,
        fallback_stale_seconds=60,
    )
    try:
        before = await db_board(sessions, Period.ALL_TIME, clock, member_id=bob)
        statements: list[str] = []

        def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            statements.append(statement)

        event.listen(pg.sync_engine, "before_cursor_execute", count)
        try:
            answers = await asyncio.gather(
                *(boards.board(Period.ALL_TIME, first=10, member_id=bob) for _ in range(20))
            )
        finally:
            event.remove(pg.sync_engine, "before_cursor_execute", count)
        assert answers == [before] * 20
        assert len(statements) == 1, "one load shared by 20 requests"
        await buy(sessions, clock, bob, 1000)
        assert await boards.board(Period.ALL_TIME, first=10, member_id=bob) == before  # cached
        assert boards.fallback is not None
        boards.fallback.seconds = boards.fallback.stale_seconds = 0  # expired and not servable
        after = await boards.board(Period.ALL_TIME, first=10, member_id=bob)
        assert after == await db_board(sessions, Period.ALL_TIME, clock, member_id=bob)
        assert after.me == Standing(bob, "Bob", 1200, 1)
        assert (await boards.rank(Period.WEEKLY, ann)) == Standing(ann, "Ann", 300, 2)
    finally:
        await broken.aclose()


async def test_without_a_store_everything_comes_from_the_database(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    ann, *_ = await four_members(sessions, clock)
    boards = Leaderboards(read_session_factory(engine), None, clock)
    await boards.start()
    boards.mark_dirty([ann])
    assert boards.pending == 0
    board = await boards.board(Period.MONTHLY, first=2, member_id=ann)
    assert board == await db_board(sessions, Period.MONTHLY, clock, first=2, member_id=ann)
    assert await boards.rebuild_all() == {}
    await boards.stop()
