"""The leaderboard read, "top 10 + my rank", in-process: Laurel's Redis path against a raw
redis-py baseline and against the database path (PostgreSQL and the embedded SQLite default),
measured in the same run.

    .venv/bin/python -m bench.leaderboard [--members 100000] [--workers 32] [--duration 3]
                                          [--rounds 3] [--reuse]

1. Seeds its own PostgreSQL database, `laurel_bench_lb` (dropped and created; `--reuse` keeps
   one of the right size), migrated with `api.database.prepare_database`, with set-based SQL:
   N members, each with 0 to 19 ledger entries (most members few) over the last 120 days:
   purchases of 10 to 500 points in steps of 10 (so many ties), reviews, reversals and
   redemptions; the members' cached scores (all time, month, week) as the ledger keeps them.
   Copies the same members and entries into an SQLite file (`BENCH_SQLITE_PATH`, default
   /tmp/laurel_bench_lb.db), migrated as the app does (reused when it holds as many entries).
2. Builds the Redis boards (`LeaderboardStore.rebuild`, a prefix of its own, deleted at the
   end) and checks that Redis, PostgreSQL and SQLite give the same board for 20 members and
   every period.
3. Runs each read with `--workers` concurrent asyncio tasks for `--duration` seconds a round,
   after a warm-up, the order rotating from round to round; the asking member is drawn from
   the whole population (uniform), or Zipf-skewed (`-zipf`):
   * `laurel-redis`: `Leaderboards.board(ALL_TIME, first=10, member_id=...)`: one EVALSHA;
   * `raw-redis`: a redis-py pipeline `ZREVRANGE 0 9 WITHSCORES` + `ZREVRANK` + `ZCARD`;
   * `pg`, `pg-zipf`, `sqlite`, `sqlite-zipf`: `Leaderboards` without Redis (every read is
     `board_from_database`, exact and immediate; no cache of any kind);
   * `laurel-outage`: `Leaderboards.board` with Redis down (a closed loopback port): the
     fallback, a ranking loaded from the database at most every 2 s and shared in process.
   Prints per read the median over rounds of req/s, p50 and p99, the worst p99, and ratios.

Loopback only; bounded (the load under two minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import json
import os
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from uuid import uuid4

import asyncpg
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from api.database import prepare_database
from models.engine import create_engine, read_session_factory
from services.clock import SystemClock
from services.leaderboards import (
    Leaderboards,
    LeaderboardStore,
    Period,
    encode_member,
    period_end,
    period_start,
)
from services.leaderboards.periods import period_key

PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")
DATABASE = "laurel_bench_lb"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
DSN = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{DATABASE}"
ADMIN_DSN = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"
SQLALCHEMY_URL = f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{DATABASE}"
SQLITE_PATH = Path(os.environ.get("BENCH_SQLITE_PATH", "/tmp/laurel_bench_lb.db"))
SQLITE_URL = f"sqlite+aiosqlite:///{SQLITE_PATH}"

Read = Callable[[random.Random], Awaitable[object]]


# ---------------------------------------------------------------- seeding


async def seed(members: int, reuse: bool) -> tuple[int, float]:
    """Members and entries in `laurel_bench_lb`; returns (ledger entries, seconds)."""
    started = time.perf_counter()
    if reuse and await _seeded_members() == members:
        engine = create_engine(SQLALCHEMY_URL, pool_size=1)
        try:
            await prepare_database(engine)  # newer migrations (and their backfills) first
        finally:
            await engine.dispose()
        conn = await asyncpg.connect(DSN)
        try:
            entries = int(await conn.fetchval("SELECT count(*) FROM ledger_entries"))
        finally:
            await conn.close()
        return entries, time.perf_counter() - started
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await admin.close()
    engine = create_engine(SQLALCHEMY_URL, pool_size=1)
    try:
        await prepare_database(engine)
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET work_mem = '256MB'")
        now = datetime.now(UTC)
        tier_id = await conn.fetchval("SELECT id FROM tiers ORDER BY threshold LIMIT 1")
        await conn.execute(
            """
            INSERT INTO members (email, display_name, joined_at, referral_code, referral_rewarded,
                                 tier_id, available, pending, lifetime_earned, redeemed, expired,
                                 qualifying_points)
            SELECT 'm' || i || '@bench.example', 'Member ' || i,
                   $1::timestamptz - (i % 365) * interval '1 day',
                   'LB' || lpad(i::text, 12, '0'), false, $2, 0, 0, 0, 0, 0, 0
            FROM generate_series(1, $3::int) AS i
            """,
            now,
            tier_id,
            members,
        )
        # Per member 0-19 entries, most members few (the square of a uniform draw); per entry
        # a kind, and points in steps of 10, so that ties are common.
        await conn.execute("SELECT setseed(0.42)")
        await conn.execute(
            """
            INSERT INTO ledger_entries (member_id, kind, status, points, remaining, description,
                                        created_at, breakdown, actor)
            SELECT e.member_id,
                   CASE WHEN e.r < 0.80 THEN 'PURCHASE' WHEN e.r < 0.88 THEN 'REVIEW'
                        WHEN e.r < 0.93 THEN 'REVERSAL' ELSE 'REDEMPTION' END,
                   'POSTED',
                   CASE WHEN e.r < 0.80 THEN 10 * (1 + floor(e.s * 50))::int
                        WHEN e.r < 0.88 THEN 25
                        WHEN e.r < 0.93 THEN -10 * (1 + floor(e.s * 5))::int
                        ELSE -100 END,
                   0, 'bench', $1::timestamptz - e.age * interval '120 days', '[]'::json, 'bench'
            FROM (
                SELECT p.id AS member_id, random() AS r, random() AS s, random() AS age
                FROM (SELECT id, floor(power(random(), 2) * 20)::int AS n FROM members) AS p
                CROSS JOIN LATERAL generate_series(1, p.n) AS g(k)
            ) AS e
            """,
            now,
        )
        # The members' cached scores (all time, this month, this week), as every ledger write
        # keeps them; the triggers count them into `leaderboard_counts`.
        month, week = (period_key(p, now) for p in (Period.MONTHLY, Period.WEEKLY))
        await conn.execute(
            """
            UPDATE members AS m
            SET earned_points = s.points, month_key = $1, month_points = coalesce(s.month, 0),
                week_key = $2, week_points = coalesce(s.week, 0)
            FROM (SELECT member_id, sum(points) AS points,
                         sum(points) FILTER (WHERE created_at >= $3 AND created_at < $4) AS month,
                         sum(points) FILTER (WHERE created_at >= $5 AND created_at < $6) AS week
                  FROM ledger_entries
                  WHERE kind IN ('PURCHASE', 'REVIEW', 'REVERSAL') GROUP BY member_id) AS s
            WHERE s.member_id = m.id
            """,
            month,
            week,
            period_start(Period.MONTHLY, now),
            period_end(Period.MONTHLY, now),
            period_start(Period.WEEKLY, now),
            period_end(Period.WEEKLY, now),
        )
        await conn.execute("ANALYZE members")
        await conn.execute("ANALYZE ledger_entries")
        entries = int(await conn.fetchval("SELECT count(*) FROM ledger_entries"))
    finally:
        await conn.close()
    return entries, time.perf_counter() - started


async def _seeded_members() -> int | None:
    try:
        conn = await asyncpg.connect(DSN)
    except asyncpg.InvalidCatalogNameError:
        return None
    try:
        if not await conn.fetchval("SELECT to_regclass('members') IS NOT NULL"):
            return None
        return int(await conn.fetchval("SELECT count(*) FROM members"))
    finally:
        await conn.close()


def _sqlite_value(value: object) -> object:
    """A PostgreSQL value as SQLAlchemy stores it in SQLite (naive UTC text, JSON text)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def _sqlite_entries() -> int | None:
    if not SQLITE_PATH.exists():
        return None
    with contextlib.closing(sqlite3.connect(SQLITE_PATH)) as lite:
        try:
            return int(lite.execute("SELECT count(*) FROM ledger_entries").fetchone()[0])
        except sqlite3.OperationalError:
            return None


def _remove_sqlite() -> None:
    for leftover in SQLITE_PATH.parent.glob(SQLITE_PATH.name + "*"):
        leftover.unlink()


async def seed_sqlite(entries: int) -> float:
    """The same members and ledger in an SQLite file (`SQLITE_PATH`), migrated as the app
    does; reused when it holds as many entries. The members' inserts fire the counts'
    trigger, as the app's writes do. Returns seconds."""
    started = time.perf_counter()
    if _sqlite_entries() == entries:
        engine = create_engine(SQLITE_URL)
        try:
            await prepare_database(engine)
        finally:
            await engine.dispose()
        return time.perf_counter() - started
    _remove_sqlite()
    engine = create_engine(SQLITE_URL)
    try:
        await prepare_database(engine)
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(DSN)
    try:
        await conn.set_type_codec(
            "json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
        with contextlib.closing(sqlite3.connect(SQLITE_PATH)) as lite:
            lite.execute("PRAGMA journal_mode=WAL")
            for table in ("members", "ledger_entries"):
                columns = [row[1] for row in lite.execute(f"PRAGMA table_info({table})").fetchall()]
                names = ", ".join(columns)
                marks = ", ".join("?" for _ in columns)
                async with conn.transaction():
                    cursor = conn.cursor(f"SELECT {names} FROM {table} ORDER BY id")
                    batch: list[tuple[object, ...]] = []
                    async for record in cursor:
                        batch.append(tuple(_sqlite_value(v) for v in record))
                        if len(batch) == 20_000:
                            lite.executemany(
                                f"INSERT INTO {table} ({names}) VALUES ({marks})", batch
                            )
                            batch = []
                    if batch:
                        lite.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", batch)
                lite.commit()
            lite.execute("ANALYZE")
            lite.commit()
    finally:
        await conn.close()
    return time.perf_counter() - started


class Draw:
    """Which member asks: uniformly from the whole population, or Zipf-skewed (rank k asked
    with weight 1 / k^1.1, the ranks spread over the members at random), so that neither a
    hot pool nor the lowest ids decide the figure."""

    def __init__(self, member_ids: list[int], *, zipf: bool) -> None:
        self.member_ids = member_ids
        self.cumulative: list[float] | None = None
        if zipf:
            order = list(member_ids)
            random.Random(11).shuffle(order)
            self.member_ids = order
            self.cumulative = list(
                itertools.accumulate(1 / k**1.1 for k in range(1, len(order) + 1))
            )

    def __call__(self, rng: random.Random) -> int:
        if self.cumulative is None:
            return self.member_ids[rng.randrange(len(self.member_ids))]
        at = bisect.bisect_left(self.cumulative, rng.random() * self.cumulative[-1])
        return self.member_ids[min(at, len(self.member_ids) - 1)]


# ---------------------------------------------------------------- measuring


@dataclass
class Round:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


async def run_round(read: Read, workers: int, duration: float, seed: int) -> Round:
    latencies: list[float] = []
    deadline = time.perf_counter() + duration

    async def worker(rng: random.Random) -> None:
        while (began := time.perf_counter()) < deadline:
            await read(rng)
            latencies.append(time.perf_counter() - began)

    started = time.perf_counter()
    await asyncio.gather(*(worker(random.Random(seed * 1000 + i)) for i in range(workers)))
    seconds = time.perf_counter() - started
    latencies.sort()
    return Round(
        requests=len(latencies),
        seconds=seconds,
        p50_ms=1000 * latencies[len(latencies) // 2],
        p99_ms=1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    )


def median(rounds: list[Round], field: str) -> float:
    return float(statistics.median(getattr(r, field) for r in rounds))


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.leaderboard", description=__doc__)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds a read a round")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="keep a seeded database of this size")
    args = parser.parse_args(argv)
    if args.duration * args.rounds * len(READS) > 120:
        parser.error(f"keep the load under 120 s in all (duration x rounds x {len(READS)} reads)")

    entries, seconds = await seed(args.members, args.reuse)
    print(
        f"database {DATABASE}: {args.members:,} members, {entries:,} ledger entries "
        f"({seconds:.1f} s)",
        flush=True,
    )
    seconds = await seed_sqlite(entries)
    print(f"SQLite {SQLITE_PATH}: the same members and entries ({seconds:.1f} s)", flush=True)

    engine = create_engine(SQLALCHEMY_URL, pool_size=16)  # the app's default pool
    read_sessions = read_session_factory(engine)
    lite = create_engine(SQLITE_URL)  # as the app builds it for the embedded default
    lite_sessions = read_session_factory(lite)
    redis = Redis.from_url(REDIS_URL)
    raw = Redis.from_url(REDIS_URL)
    store = LeaderboardStore(redis, prefix=f"laurelbench:{uuid4().hex}:")
    clock = SystemClock()
    boards = Leaderboards(read_sessions, store, clock)
    pg_boards = Leaderboards(read_sessions, None, clock)  # no Redis: the database answers
    lite_boards = Leaderboards(lite_sessions, None, clock)
    # Redis "down": a client for a closed loopback port. Reads fall back to the database
    # through the per-process ranking cache (one aggregation per board every 2 s).
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    outage = Leaderboards(read_sessions, LeaderboardStore(dead, prefix=store.prefix), clock)
    try:
        now = clock.now()
        began = time.perf_counter()
        ranked = await store.rebuild(read_sessions, Period.ALL_TIME, now)
        print(
            f"Redis ALL_TIME board built from the database: {ranked:,} members ranked "
            f"({time.perf_counter() - began:.2f} s)",
            flush=True,
        )
        for period in (Period.MONTHLY, Period.WEEKLY):
            await store.rebuild(read_sessions, period, now)

        async with engine.connect() as connection:
            member_ids = [
                int(m)
                for m in (
                    await connection.exec_driver_sql("SELECT id FROM members ORDER BY id")
                ).scalars()
            ]
        checker = random.Random(7)
        probes = [*checker.sample(member_ids, 20), None]
        for period in Period:
            for member_id in probes:
                got = [
                    await source.board(period, first=10, member_id=member_id)
                    for source in (boards, pg_boards, lite_boards)
                ]
                if not got[0] == got[1] == got[2]:
                    print(f"MISMATCH {period} member {member_id}:")
                    for name, board in zip(("redis", "pg", "sqlite"), got, strict=True):
                        print(f"  {name:7} {board}")
                    return 1
        print(
            "check: Redis, PostgreSQL and SQLite boards agree (every period, 20 members)",
            flush=True,
        )

        board_key = store.keys(Period.ALL_TIME, now).board
        uniform = Draw(member_ids, zipf=False)
        zipf = Draw(member_ids, zipf=True)

        def laurel(source: Leaderboards, draw: Draw) -> Read:
            async def read(rng: random.Random) -> object:
                return await source.board(Period.ALL_TIME, first=10, member_id=draw(rng))

            return read

        async def raw_redis(rng: random.Random) -> object:
            member = encode_member(uniform(rng))
            pipe = raw.pipeline(transaction=False)
            pipe.zrevrange(board_key, 0, 9, withscores=True)
            pipe.zrevrank(board_key, member)
            pipe.zcard(board_key)
            return await pipe.execute()

        reads: dict[str, Read] = {
            "laurel-redis": laurel(boards, uniform),
            "raw-redis": raw_redis,
            "pg": laurel(pg_boards, uniform),
            "pg-zipf": laurel(pg_boards, zipf),
            "sqlite": laurel(lite_boards, uniform),
            "sqlite-zipf": laurel(lite_boards, zipf),
            "laurel-outage": laurel(outage, uniform),
        }
        assert list(reads) == READS
        for read in reads.values():  # warm-up: connections, prepared statements, scripts
            await run_round(read, args.workers, args.warmup, seed=0)
        results: dict[str, list[Round]] = {name: [] for name in reads}
        names = list(reads)
        for number in range(args.rounds):
            order = names[number % len(names) :] + names[: number % len(names)]
            for name in order:
                result = await run_round(reads[name], args.workers, args.duration, number + 1)
                results[name].append(result)
                print(
                    f"  round {number + 1} {name:13} {result.rate:9.0f} req/s  "
                    f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms",
                    flush=True,
                )

        print(f"\n{args.workers} workers, {args.rounds} rounds x {args.duration:g} s, medians:")
        print(f"  {'read':13} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'worst p99':>10}")
        for name in names:
            print(
                f"  {name:13} {median(results[name], 'rate'):9.0f} "
                f"{median(results[name], 'p50_ms'):8.2f} {median(results[name], 'p99_ms'):8.2f} "
                f"{max(r.p99_ms for r in results[name]):10.2f}"
            )

        def rate(name: str) -> float:
            return median(results[name], "rate")

        print(
            f"\n  laurel-redis / raw-redis: {rate('laurel-redis') / rate('raw-redis'):.2f}x"
            "  (goal: 0.7x or more)"
        )
        for name in ("pg", "pg-zipf", "sqlite", "sqlite-zipf"):
            worst = max(r.p99_ms for r in results[name])
            print(
                f"  {name:12} {rate(name):6.0f} req/s, worst p99 {worst:6.1f} ms,"
                f" {rate(name) / rate('raw-redis'):.2f}x raw-redis"
                "  (goal: 300 req/s or more, p99 at most 250 ms)"
            )
        print(
            f"  laurel-outage / pg: {rate('laurel-outage') / rate('pg'):.1f}x"
            "  (Redis down: answers from the shared ranking, at most 2 s old)"
        )
        return 0
    finally:
        await store.drop()
        await redis.aclose()
        await raw.aclose()
        await dead.aclose()
        await engine.dispose()
        await lite.dispose()


READS = ["laurel-redis", "raw-redis", "pg", "pg-zipf", "sqlite", "sqlite-zipf", "laurel-outage"]


def run() -> None:
    try:
        import uvloop
    except ImportError:  # the app serves on uvloop; without it both sides run on asyncio
        sys.exit(asyncio.run(main()))
    sys.exit(uvloop.run(main()))


if __name__ == "__main__":
    run()
