"""Leaderboard privacy: a member that opted out, or was erased, is on no board and in nobody's
rank, from the database, from Redis, from a rebuild and from the outage snapshot; an opted-out
member's own rank still answers (where it would rank); an erased member has none.

Flags are set on the row directly and announced as a commit does (`events.touched`, whose
after-commit hook calls `Leaderboards.mark_dirty`): the edits themselves are the member
mutations' business. Real PostgreSQL, real SQLite, real Redis (a key prefix per test).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from redis.asyncio import Redis
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import QUALIFYING_KINDS, EntryKind, EntryStatus, LedgerEntry, Member, Tier
from models.engine import read_session_factory, session_factory
from services.clock import ManualClock
from services.direct.writer import DirectWriter
from services.events import notifying, touched
from services.leaderboards import (
    Board,
    Leaderboards,
    LeaderboardStore,
    Period,
    Standing,
    encode_member,
    period_end,
    period_points,
    period_start,
    ranked_members,
)
from services.leaderboards.snapshot import Ranking
from services.leaderboards.sql import board_direct
from services.ledger.adjustments import adjust_points
from services.ledger.sweeps import sweep
from services.redemptions import redeem
from tests.services.helpers import configure, new_member, new_reward, restate_scores
from tests.services.test_leaderboards import (
    REDIS_URL,
    buy,
    db_board,
    four_members,
    redis_board,
    refund,
    shape,
    unreachable_redis,
)

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def store() -> AsyncIterator[LeaderboardStore]:
    """Boards under a Redis key prefix of this test's own, deleted afterwards."""
    client = Redis.from_url(REDIS_URL)
    prefix = f"laureltest:{uuid4().hex}:"
    yield LeaderboardStore(client, prefix=prefix)
    leftovers = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if leftovers:
        await client.delete(*leftovers)
    await client.aclose()


def announcing(engine: AsyncEngine, boards: Leaderboards | None = None) -> Sessions:
    """Sessions whose commits are announced to `boards`, as the app's are (through its bus)."""
    if boards is None:
        return session_factory(engine)
    return session_factory(engine, info=notifying(boards.mark_dirty))


async def opt_out(sessions: Sessions, member_id: int, hidden: bool = True) -> None:
    async with sessions.begin() as session:
        await session.execute(
            update(Member).where(Member.id == member_id).values(leaderboard_opt_out=hidden)
        )
        touched(session, [member_id])


async def erase(sessions: Sessions, clock: ManualClock, member_id: int) -> None:
    """What an erasure does to the row (the lead's `eraseMember` does the rest)."""
    async with sessions.begin() as session:
        await session.execute(
            update(Member)
            .where(Member.id == member_id)
            .values(
                erased_at=clock.now(),
                display_name="Erased member",
                email=f"erased-{member_id}@invalid",
            )
        )
        touched(session, [member_id])


async def in_redis(store: LeaderboardStore, clock: ManualClock, member_id: int) -> set[str]:
    """Which of the member's Redis entries exist: `board:<period>`, `unlisted:<period>`,
    `name`."""
    found = set()
    stored = encode_member(member_id)
    for period in Period:
        keys = store.keys(period, clock.now())
        if await store.redis.zscore(keys.board, stored) is not None:
            found.add(f"board:{period}")
        if await store.redis.zscore(keys.unlisted, stored) is not None:
            found.add(f"unlisted:{period}")
    if await store.redis.hexists(store.names_key, stored):
        found.add("name")
    return found


async def agrees_with_the_database(
    boards: Leaderboards, sessions: Sessions, clock: ManualClock, probes: list[int | None]
) -> None:
    for period in Period:
        for first in (0, 2, 10):
            for me in probes:
                expected = await db_board(sessions, period, clock, first=first, member_id=me)
                got = await boards.board(period, first=first, member_id=me)
                assert got == expected, (period, first, me)


# ---------------------------------------------------------------- the database (both backends)


async def test_an_opted_out_member_is_on_no_database_board_but_keeps_its_own_rank(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    # Given ann 300, bob 200, cy 200, dee 100 (ranks 1, 2, 2, 4) and eve with nothing
    sessions = session_factory(engine)
    ann, bob, cy, dee, eve = await four_members(sessions, clock)

    # When bob opts out
    await opt_out(sessions, bob)

    # Then every period's board lists the others only, and the gap closes below him
    for period in Period:
        board = await db_board(sessions, period, clock, member_id=bob)
        assert shape(board) == [(ann, 300, 1), (cy, 200, 2), (dee, 100, 3)]
        assert board.total_ranked == 3
        # ... while his own standing is where he would rank among the listed members
        assert board.me == Standing(bob, "Bob", 200, 2)
        mine = await db_board(sessions, period, clock, first=0, member_id=dee)
        assert mine.me == Standing(dee, "Dee", 100, 3) and mine.total_ranked == 3
        assert (await db_board(sessions, period, clock, member_id=eve)).me is None

    # An opted-out leader ranks first on its own, and nobody counts it
    await opt_out(sessions, ann)
    board = await db_board(sessions, Period.WEEKLY, clock, member_id=ann)
    assert shape(board) == [(cy, 200, 1), (dee, 100, 2)] and board.total_ranked == 2
    assert board.me == Standing(ann, "Ann", 300, 1)

    # Opting back in puts them back exactly
    await opt_out(sessions, ann, hidden=False)
    await opt_out(sessions, bob, hidden=False)
    board = await db_board(sessions, Period.MONTHLY, clock, member_id=bob)
    assert shape(board) == [(ann, 300, 1), (bob, 200, 2), (cy, 200, 2), (dee, 100, 4)]
    assert board.me == Standing(bob, "Bob", 200, 2) and board.total_ranked == 4


async def test_an_erased_member_is_on_no_database_board_and_has_no_rank(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    ann, bob, cy, dee, _ = await four_members(sessions, clock)
    await opt_out(sessions, dee)

    await erase(sessions, clock, cy)
    await erase(sessions, clock, dee)  # opted out, then erased: no standing either

    for period in Period:
        board = await db_board(sessions, period, clock, member_id=cy)
        assert shape(board) == [(ann, 300, 1), (bob, 200, 2)] and board.total_ranked == 2
        assert board.me is None
        assert (await db_board(sessions, period, clock, member_id=dee)).me is None
        assert "Erased member" not in {s.display_name for s in board.entries}
    async with sessions() as session:
        figures = await period_points(session, [ann, cy, dee], clock.now())
        rows = await ranked_members(session, Period.ALL_TIME, clock.now())
    assert (figures[ann].listed, figures[ann].erased) == (True, False)
    assert (figures[cy].listed, figures[cy].erased) == (False, True)
    assert (figures[dee].listed, figures[dee].erased) == (False, True)
    assert figures[cy].points[Period.ALL_TIME] == 200  # the ledger's amounts stay
    assert sorted(member for member, *_ in rows) == [ann, bob]


async def test_the_snapshot_ranks_like_the_database_with_unlisted_members(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(engine)
    ann, bob, cy, dee, eve = await four_members(sessions, clock)
    await opt_out(sessions, bob)
    await erase(sessions, clock, dee)
    for period in Period:
        async with sessions() as session:
            rows = await ranked_members(session, period, clock.now())
        assert sorted(rows) == [
            (ann, "Ann", 300, True),
            (bob, "Bob", 200, False),
            (cy, "Cy", 200, True),
        ]
        ranking = Ranking.of(period, rows)
        for first in (0, 1, 10):
            for me in (ann, bob, cy, dee, eve, None):
                expected = await db_board(sessions, period, clock, first=first, member_id=me)
                assert ranking.board(first=first, member_id=me) == expected, (period, first, me)


# ---------------------------------------------------------------- Redis, through the facade


async def test_opting_out_leaves_every_redis_board_and_opting_in_restores_it_exactly(
    pg: AsyncEngine, clock: ManualClock, store: LeaderboardStore
) -> None:
    boards = Leaderboards(read_session_factory(pg), store, clock)
    sessions = announcing(pg, boards)
    ann, bob, cy, dee, eve = await four_members(sessions, clock)
    await boards.rebuild_all()
    assert await boards.flush()
    assert await in_redis(store, clock, bob) == {*(f"board:{p}" for p in Period), "name"}

    # When bob opts out (announced after the commit) and the writer runs
    await opt_out(sessions, bob)
    assert boards.pending == 1
    assert await boards.flush()

    # Then he is on no board, nobody's rank counts him, and his own rank still answers
    assert await in_redis(store, clock, bob) == {*(f"unlisted:{p}" for p in Period), "name"}
    for period in Period:
        board = await boards.board(period, first=10, member_id=bob)
        assert shape(board) == [(ann, 300, 1), (cy, 200, 2), (dee, 100, 3)]
        assert board.total_ranked == 3
        assert board.me == Standing(bob, "Bob", 200, 2)
        assert await boards.rank(period, dee) == Standing(dee, "Dee", 100, 3)
    await agrees_with_the_database(boards, sessions, clock, [ann, bob, cy, dee, eve, None])

    # Earning while opted out moves his own standing, not the board
    await buy(sessions, clock, bob, 250)
    assert await boards.flush()
    assert await boards.rank(Period.ALL_TIME, bob) == Standing(bob, "Bob", 450, 1)
    assert shape(await boards.board(Period.ALL_TIME, first=10, member_id=None)) == [
        (ann, 300, 1),
        (cy, 200, 2),
        (dee, 100, 3),
    ]

    # When he opts back in, he returns to every board with his exact points
    await opt_out(sessions, bob, hidden=False)
    assert await boards.flush()
    assert await in_redis(store, clock, bob) == {*(f"board:{p}" for p in Period), "name"}
    for period in Period:
        board = await boards.board(period, first=10, member_id=dee)
        assert shape(board) == [(bob, 450, 1), (ann, 300, 2), (cy, 200, 3), (dee, 100, 4)]
        assert board.me == Standing(dee, "Dee", 100, 4) and board.total_ranked == 4
        board_key = store.keys(period, clock.now()).board
        assert await store.redis.zscore(board_key, encode_member(bob)) == 450.0
    await agrees_with_the_database(boards, sessions, clock, [ann, bob, cy, dee, eve, None])


async def test_an_erased_member_leaves_redis_with_its_name_and_never_comes_back(
    pg: AsyncEngine, clock: ManualClock, store: LeaderboardStore
) -> None:
    boards = Leaderboards(read_session_factory(pg), store, clock)
    sessions = announcing(pg, boards)
    ann, bob, cy, dee, _ = await four_members(sessions, clock)
    await opt_out(sessions, dee)
    await boards.rebuild_all()
    assert await boards.flush()
    async with sessions() as session:
        before_erasure = await period_points(session, [cy, dee], clock.now())

    await erase(sessions, clock, cy)
    await erase(sessions, clock, dee)
    assert await boards.flush()

    for member in (cy, dee):
        assert await in_redis(store, clock, member) == set(), "no score and no name left"
    for period in Period:
        board = await boards.board(period, first=10, member_id=cy)
        assert shape(board) == [(ann, 300, 1), (bob, 200, 2)] and board.total_ranked == 2
        assert board.me is None
        assert await boards.rank(period, dee) is None
        assert await boards.rank(period, bob) == Standing(bob, "Bob", 200, 2)

    # A slower writer holding figures read before the erasure cannot bring them back
    assert await store.write(before_erasure, clock.now()) == 0
    assert await in_redis(store, clock, cy) == set()
    # ... while announcing the erased member again is harmless
    boards.mark_dirty([cy, dee])
    assert await boards.flush()
    assert await in_redis(store, clock, cy) == set()
    await agrees_with_the_database(boards, sessions, clock, [ann, bob, cy, dee, None])


async def test_rebuilds_leave_out_opted_out_and_erased_members(
    pg: AsyncEngine, clock: ManualClock, store: LeaderboardStore
) -> None:
    # Given flags changed with nobody announcing them (another process, or Redis wiped since)
    sessions = session_factory(pg)
    ann, bob, cy, dee, eve = await four_members(sessions, clock)
    await opt_out(sessions, bob)
    await erase(sessions, clock, cy)
    boards = Leaderboards(read_session_factory(pg), store, clock)

    # When the boards are rebuilt (`laurel leaderboards rebuild`)
    assert await boards.rebuild_all() == dict.fromkeys(Period, 2)

    # Then only the listed members are on them, bob keeps his own rank, cy has none
    assert await in_redis(store, clock, bob) == {*(f"unlisted:{p}" for p in Period), "name"}
    assert await in_redis(store, clock, cy) == set()
    for period in Period:
        board = await redis_board(store, period, clock, member_id=bob)
        assert shape(board) == [(ann, 300, 1), (dee, 100, 2)] and board.total_ranked == 2
        assert board.me == Standing(bob, "Bob", 200, 2)
    await agrees_with_the_database(boards, sessions, clock, [ann, bob, cy, dee, eve, None])

    # And the rebuild a first read does after Redis lost everything, alike
    await store.drop()
    await agrees_with_the_database(boards, sessions, clock, [ann, bob, cy, dee, eve, None])
    assert await store.is_built(Period.WEEKLY, clock.now())
    assert await in_redis(store, clock, bob) == {*(f"unlisted:{p}" for p in Period), "name"}
    assert await in_redis(store, clock, cy) == set()

    # Opting back in after a rebuild: back on every board
    announced = announcing(pg, boards)
    await opt_out(announced, bob, hidden=False)
    assert await boards.flush()
    assert (await boards.board(Period.MONTHLY, first=10, member_id=bob)).me == Standing(
        bob, "Bob", 200, 2
    )
    await agrees_with_the_database(boards, sessions, clock, [ann, bob, cy, dee, eve, None])


async def test_during_an_outage_the_snapshot_hides_them_and_answers_their_own_rank(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    broken = unreachable_redis()
    boards = Leaderboards(
        read_session_factory(pg),
        LeaderboardStore(broken, prefix="laureltest:outage:"),
        clock,
        fallback_cache_seconds=60,
        fallback_stale_seconds=60,
    )
    sessions = announcing(pg, boards)
    try:
        ann, bob, cy, dee, eve = await four_members(sessions, clock)
        await opt_out(sessions, bob)
        await agrees_with_the_database(boards, sessions, clock, [ann, bob, cy, dee, eve, None])
        assert (await boards.board(Period.WEEKLY, first=10, member_id=bob)).me == Standing(
            bob, "Bob", 200, 2
        )

        # When cy is erased while the snapshots are cached (for a minute here), the writer's
        # attempt (Redis is down: it fails and keeps cy) drops the snapshots that show her
        await erase(sessions, clock, cy)
        assert not await boards.flush()
        for period in Period:
            board = await boards.board(period, first=10, member_id=cy)
            assert shape(board) == [(ann, 300, 1), (dee, 100, 2)], period
            assert board.me is None and board.total_ranked == 2
        # ... and likewise when bob opts back in
        await opt_out(sessions, bob, hidden=False)
        assert not await boards.flush()
        board = await boards.board(Period.ALL_TIME, first=10, member_id=bob)
        assert shape(board) == [(ann, 300, 1), (bob, 200, 2), (dee, 100, 3)]
        await agrees_with_the_database(boards, sessions, clock, [ann, bob, cy, dee, eve, None])
    finally:
        await broken.aclose()


async def test_without_redis_the_facade_honours_the_flags_on_both_backends(
    engine: AsyncEngine, clock: ManualClock
) -> None:
    boards = Leaderboards(read_session_factory(engine), None, clock)
    sessions = announcing(engine, boards)
    ann, bob, cy, dee, _ = await four_members(sessions, clock)
    await opt_out(sessions, ann)
    await erase(sessions, clock, dee)
    for period in Period:
        board = await boards.board(period, first=10, member_id=ann)
        assert shape(board) == [(bob, 200, 1), (cy, 200, 1)] and board.total_ranked == 2
        assert board.me == Standing(ann, "Ann", 300, 1)
        assert await boards.rank(period, dee) is None
        assert await boards.rank(period, cy) == Standing(cy, "Cy", 200, 1)


# ---------------------------------------------------------------- random data, every source


async def test_every_source_agrees_with_the_rule_on_random_data(
    pg: AsyncEngine, clock: ManualClock, store: LeaderboardStore
) -> None:
    """200 members with random ledgers, a fifth of them opted out and some erased: the
    database (through a session and straight on asyncpg), a rebuilt Redis board, an applied
    one and the snapshot all equal the rule computed naively in Python, for every member's
    own standing too."""
    rng = random.Random(20260111)
    sessions = session_factory(pg)
    count = 200
    clock.set(datetime(2026, 1, 11, 20, tzinfo=UTC))  # late on a Sunday: a full week behind
    async with sessions.begin() as session:
        tier_id = await session.scalar(select(Tier.id).order_by(Tier.threshold).limit(1))
        flags = [(rng.random() < 0.2, rng.random() < 0.08) for _ in range(count)]
        ids = list(
            (
                await session.scalars(
                    insert(Member).returning(Member.id, sort_by_parameter_order=True),
                    [
                        {
                            "email": f"m{i}@example.com",
                            "display_name": f"Member {i}",
                            "joined_at": clock.now() - timedelta(days=90),
                            "referral_code": f"LST{i:08d}",
                            "tier_id": tier_id,
                            "leaderboard_opt_out": opted_out,
                            "erased_at": clock.now() if erased else None,
                        }
                        for i, (opted_out, erased) in enumerate(flags)
                    ],
                )
            ).all()
        )
        entries: list[dict[str, Any]] = []
        for member_id in ids:
            for _ in range(rng.randint(0, 6)):
                kind = rng.choice([*EntryKind])
                points = rng.choice((10, 10, 20, 50))
                if kind in (EntryKind.REVERSAL, EntryKind.REDEMPTION, EntryKind.EXPIRATION):
                    points = -points
                entries.append(
                    {
                        "member_id": member_id,
                        "kind": kind,
                        "status": rng.choice((EntryStatus.POSTED, EntryStatus.VOIDED)),
                        "points": points,
                        "description": "random",
                        "created_at": clock.now() - timedelta(minutes=rng.randint(0, 30 * 24 * 60)),
                    }
                )
        await session.execute(insert(LedgerEntry), entries)
        # Written around the ledger's own code: keep the members' scores as `post` would.
        await restate_scores(session, clock.now())

    state = {
        member_id: (None if erased else not opted_out)
        for member_id, (opted_out, erased) in zip(ids, flags, strict=True)
    }
    hidden = [m for m in ids if state[m] is not True]  # every opted-out and erased member
    probes: list[int | None] = [*rng.sample([m for m in ids if state[m]], 30), *hidden, None]
    applied = LeaderboardStore(store.redis, prefix=f"{store.prefix}applied:")
    writer = DirectWriter.on(pg, lambda _: None)
    assert writer is not None
    async with sessions() as session:
        await applied.apply(session, ids, clock.now())
    for period in Period:
        ranked = await store.rebuild(sessions, period, clock.now())
        await store.redis.set(applied.keys(period, clock.now()).built, "1")
        async with sessions() as session:
            ranking = Ranking.of(period, await ranked_members(session, period, clock.now()))
        for me in probes:
            expected = rule(entries, state, period, clock.now(), me)
            assert expected.total_ranked == ranked > 10
            assert await db_board(sessions, period, clock, first=count, member_id=me) == expected
            direct = await board_direct(writer, period, clock.now(), first=count, member_id=me)
            assert direct == expected
            assert await redis_board(store, period, clock, first=count, member_id=me) == expected
            assert await redis_board(applied, period, clock, first=count, member_id=me) == expected
            assert ranking.board(first=count, member_id=me) == expected
        opted_out = [m for m in ids if state[m] is False]
        assert any(rule(entries, state, period, clock.now(), m).me for m in opted_out), period


def rule(
    entries: list[dict[str, Any]],
    state: dict[int, bool | None],
    period: Period,
    now: datetime,
    me: int | None,
) -> Board:
    """The contract's rule, naively: listed members ranked, an opted-out member's own rank
    counted against them, an erased member nowhere."""
    start, end = period_start(period, now), period_end(period, now)
    totals: dict[int, int] = {}
    for entry in entries:
        if entry["kind"] not in QUALIFYING_KINDS or entry["status"] is EntryStatus.VOIDED:
            continue
        if start is not None and end is not None and not start <= entry["created_at"] < end:
            continue
        totals[entry["member_id"]] = totals.get(entry["member_id"], 0) + entry["points"]
    listed = sorted((-p, m) for m, p in totals.items() if p > 0 and state[m])
    names = {m: f"Member {i}" for i, m in enumerate(state)}

    def standing(member: int) -> Standing:
        points = totals[member]
        above = sum(1 for q, _ in listed if -q > points)
        return Standing(member, names[member], points, above + 1)

    mine = None
    if me is not None and state[me] is not None and totals.get(me, 0) > 0:
        mine = standing(me)
    return Board(period, [standing(m) for _, m in listed], mine, len(listed))


async def test_a_new_member_who_opts_out_before_earning_never_appears(
    pg: AsyncEngine, clock: ManualClock, store: LeaderboardStore
) -> None:
    boards = Leaderboards(read_session_factory(pg), store, clock)
    sessions = announcing(pg, boards)
    ann = await new_member(sessions, clock, "ann")
    zoe = await new_member(sessions, clock, "zoe")
    await buy(sessions, clock, ann, 100)
    await opt_out(sessions, zoe)
    await boards.rebuild_all()
    await buy(sessions, clock, zoe, 500)
    assert await boards.flush()
    for period in Period:
        board = await boards.board(period, first=10, member_id=zoe)
        assert shape(board) == [(ann, 100, 1)] and board.total_ranked == 1
        assert board.me == Standing(zoe, "Zoe", 500, 1)
    assert await in_redis(store, clock, zoe) == {*(f"unlisted:{p}" for p in Period), "name"}


# ---------------------------------------------------------------- every kind of write


async def brute_force(sessions: Sessions, period: Period, now: datetime, me: int) -> Board:
    """The contract's rule over the ledger's rows as they are, naively in Python."""
    async with sessions() as session:
        rows = (await session.execute(select(LedgerEntry))).scalars().all()
        people = (await session.execute(select(Member))).scalars().all()
    entries = [
        {
            "member_id": e.member_id,
            "kind": e.kind,
            "status": e.status,
            "points": e.points,
            "created_at": e.created_at,
        }
        for e in rows
    ]
    state = {m.id: None if m.erased_at else not m.leaderboard_opt_out for m in people}
    board = rule(entries, state, period, now, me)
    names = {m.id: m.display_name for m in people}

    def named(s: Standing) -> Standing:
        return Standing(s.member_id, names[s.member_id], s.points, s.rank)

    me_named = None if board.me is None else named(board.me)
    return Board(period, [named(s) for s in board.entries], me_named, board.total_ranked)


async def test_database_redis_and_the_rule_agree_after_every_kind_of_write_on_both_backends(
    engine: AsyncEngine, clock: ManualClock, store: LeaderboardStore
) -> None:
    """Purchases (across a week's and a month's end), a refund, a redemption, an adjustment
    both ways, expiry, opting out and erasure: after each, the database's boards, the Redis
    boards (fed as the app feeds them) and the rule computed over the ledger are equal, for
    every period and every member's own standing."""
    boards = Leaderboards(read_session_factory(engine), store, clock)
    sessions = announcing(engine, boards)
    await configure(sessions, expiry_days=20)
    clock.set(datetime(2026, 1, 30, 12, tzinfo=UTC))  # a Friday, the month's last days
    ids = [await new_member(sessions, clock, n) for n in ("ann", "bob", "cy", "dee", "eve")]
    ann, bob, cy, dee, eve = ids
    await boards.rebuild_all()
    reward = await new_reward(sessions, clock, cost=60)

    async def check(step: str) -> None:
        assert await boards.flush()
        for period in Period:
            for me in ids:
                expected = await brute_force(sessions, period, clock.now(), me)
                assert (
                    await db_board(sessions, period, clock, first=10, member_id=me) == expected
                ), (step, period, me)
                got = await store.board(period, clock.now(), first=10, member_id=me)
                if got is None:  # a new period's board: built as a read would
                    await boards.rebuild_all()
                    got = await store.board(period, clock.now(), first=10, member_id=me)
                assert got == expected, (step, period, me, "redis")

    order = await buy(sessions, clock, ann, 300)
    await buy(sessions, clock, bob, 200)
    await buy(sessions, clock, cy, 200)
    await check("purchases")
    clock.set(datetime(2026, 2, 2, 9, tzinfo=UTC))  # a new month and a new week
    await buy(sessions, clock, dee, 100)
    await buy(sessions, clock, bob, 50)
    await check("a new period")
    await refund(sessions, clock, order, 150)
    await check("a refund")
    async with sessions.begin() as session:
        await redeem(
            session,
            member_id=bob,
            reward_id=reward,
            idempotency_key="r1",
            now=clock.now(),
            actor=f"member:{bob}",
        )
    await check("a redemption")
    for points, key in ((80, "a1"), (-30, "a2")):
        async with sessions.begin() as session:
            await adjust_points(
                session,
                member_id=eve,
                points=points,
                reason="test",
                idempotency_key=key,
                actor="admin",
                now=clock.now(),
            )
    await check("adjustments")
    clock.advance(timedelta(days=40))
    await sweep(sessions, clock.now())
    await check("expiry")
    await buy(sessions, clock, cy, 100)
    await opt_out(sessions, cy)
    await check("an opt-out")
    await erase(sessions, clock, dee)
    await buy(sessions, clock, ann, 10)
    await check("an erasure")
    await opt_out(sessions, cy, hidden=False)
    await check("back in")
