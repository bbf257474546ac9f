"""promotionResults on a large program, timed as the API computes it on PostgreSQL
(services.experiments: members assigned and summed per group by the database), next to
baselines measured in the same run: streaming every member id to Python alone, and assigning
every id in Python with no database (what the streaming path, SQLite's, adds to it).

    python -m bench.experiments                         # 1,000,000 members, 20% buyers
    python -m bench.experiments --members 200000 --rounds 3

It seeds (or reuses) its own database, `laurel_bench_experiments` (BENCH_PG_DATABASE changes
it), in SQL (generate_series): members, and one purchase with its PURCHASE entry per buyer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy import func, select, text

from api.database import prepare_database
from bench.config import Database
from models import Member, Promotion
from models.engine import create_engine, session_factory
from services import experiments
from services.program import ensure_program

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

_MEMBERS = """
INSERT INTO members (email, display_name, joined_at, referral_code, referral_rewarded, tier_id,
                     available, pending, lifetime_earned, redeemed, expired, qualifying_points,
                     earned_points, status, attributes, leaderboard_opt_out)
SELECT 'm' || n || '@example.com', 'M' || n, :joined, 'R' || n, false,
       (SELECT id FROM tiers WHERE threshold = 0), 0, 0, 0, 0, 0, 0, 0, 'ACTIVE', '{}', false
FROM generate_series(1, :count) AS n
"""
_ENTRIES = """
INSERT INTO ledger_entries (member_id, kind, status, points, remaining, description, reference,
                            created_at, breakdown, actor)
SELECT id, 'PURCHASE', 'POSTED', 10 + id % 90, 10 + id % 90, 'Purchase', 'o-' || id, :at,
       '[]', 'bench'
FROM members WHERE id % :every = 0
"""
_PURCHASES = """
INSERT INTO purchases (order_id, member_id, amount, occurred_at, entry_id, points_earned,
                       refunded_amount, points_reversed)
SELECT reference, member_id, points, created_at, id, points, 0, 0
FROM ledger_entries WHERE kind = 'PURCHASE'
"""


async def _seed(database: Database, members: int, buyer_every: int) -> None:
    admin = await asyncpg.connect(database.admin_dsn)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database.name)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{database.name}"')
    finally:
        await admin.close()
    engine = create_engine(database.sqlalchemy_url)
    try:
        await prepare_database(engine)
        async with session_factory(engine).begin() as session:
            await ensure_program(session)
            have = await session.scalar(select(func.count()).select_from(Member))
            if have == members:
                return
            await session.execute(text("TRUNCATE members, ledger_entries, purchases CASCADE"))
            joined = NOW - timedelta(days=60)
            await session.execute(text(_MEMBERS), {"joined": joined, "count": members})
            at = NOW - timedelta(days=1)
            await session.execute(text(_ENTRIES), {"at": at, "every": buyer_every})
            await session.execute(text(_PURCHASES))
        async with engine.connect() as connection:
            await connection.execute(text("COMMIT"))
            await connection.execute(text("VACUUM ANALYZE members, ledger_entries, purchases"))
    finally:
        await engine.dispose()


async def _timed(run: Callable[[], Awaitable[Any]], rounds: int) -> tuple[list[float], Any]:
    seconds, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = await run()
        seconds.append(time.perf_counter() - started)
    return seconds, result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--buyer-every", type=int, default=5, help="every Nth member bought")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    database = Database(name=os.environ.get("BENCH_PG_DATABASE", "laurel_bench_experiments"))
    started = time.perf_counter()
    await _seed(database, args.members, args.buyer_every)
    print(f"seeded or reused in {time.perf_counter() - started:.1f} s")

    # Not stored: the results read only its id, dates and share.
    promotion = Promotion(
        id=1,
        name="Double points",
        multiplier=Decimal(2),
        starts_at=NOW - timedelta(days=7),
        ends_at=NOW + timedelta(days=7),
        experiment_control_share=0.2,
    )
    engine = create_engine(database.sqlalchemy_url)
    sessions = session_factory(engine)

    async def results() -> experiments.PromotionResults:
        async with sessions() as session:
            return await experiments.promotion_results(session, promotion, NOW)

    async def ids_only() -> int:
        count = 0
        async with sessions() as session:
            connection = await session.connection()
            streamed = await connection.stream(
                select(Member.id).execution_options(yield_per=experiments.BATCH)
            )
            async for part in streamed.partitions():
                count += len(part)
        return count

    async def hashing() -> int:
        assignment = experiments.Assignment(1, 0.2)
        control = experiments.ExperimentGroup.CONTROL
        return sum(assignment.group(m) is control for m in range(1, args.members + 1))

    try:
        figures: dict[str, list[float]] = {}
        figures["promotionResults"], found = await _timed(results, args.rounds)
        figures["stream ids only"], _ = await _timed(ids_only, args.rounds)
        figures["assign ids, no database"], _ = await _timed(hashing, args.rounds)
    finally:
        await engine.dispose()
    base = statistics.median(figures["stream ids only"])
    print(f"{args.members:,} members, every {args.buyer_every}th a buyer, {args.rounds} rounds")
    for name, seconds in figures.items():
        median = statistics.median(seconds)
        print(f"  {name:<26} median {median:6.2f} s   {median / base:5.2f}x streaming ids")
    for group in found.groups:
        print(
            f"  {group.group.value:<9} members {group.members:,} buyers {group.buyers:,} "
            f"pointsCost {group.points_cost:,}"
        )


if __name__ == "__main__":
    asyncio.run(main())
