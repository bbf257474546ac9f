"""How long the admin page's charts take on the bench database (100,000 members, ~2,000,000
ledger entries): each statement of `programTimeline` (services.timeline), alone and as one
request runs them (concurrently, one session each).

    .venv/bin/python -m bench.timeline [--rounds 7] [--covering-index] [--explain]

Reads `laurel_bench` as `python -m bench.seed` left it (nothing is written). Windows end at the
newest ledger entry, as a chart of "the last N days" does, and cover:
30 days by DAY (the admin page's default), 90 days by DAY, 26 weeks by WEEK, 12 months by MONTH.
Prints, per window, the median and worst of `--rounds` runs (after one warm-up) of each family
and of the three chart families run together.

`--covering-index` adds, for the run only, an index on ledger_entries (created_at) INCLUDE
(kind, status, points, member_id), so every chart reads the index alone (then VACUUMs so the
visibility map allows it) and drops it afterwards: the experiment behind the index the page
would need for long windows. `--explain` prints EXPLAIN (ANALYZE, BUFFERS) of each statement
of the first window.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bench.config import Database
from models import LedgerEntry
from models.engine import create_engine, read_session_factory, session_factory
from services import rollup, timeline
from services.timeline import Bucket, Interval

COVERING = "bench_ix_ledger_entries_created_covering"
WINDOWS = (
    ("30 days by day", timedelta(days=30), Interval.DAY),
    ("90 days by day", timedelta(days=90), Interval.DAY),
    ("26 weeks by week", timedelta(weeks=26), Interval.WEEK),
    ("12 months by month", timedelta(days=365), Interval.MONTH),
    ("12 months by week", timedelta(days=365), Interval.WEEK),
    ("12 months by day", timedelta(days=365), Interval.DAY),
)

Family = Callable[[AsyncSession, list[Bucket], datetime, datetime], Awaitable[Any]]
FAMILIES: dict[str, Family] = {
    "points": lambda s, cut, _a, _b: timeline.points(s, cut),
    "members": lambda s, cut, _a, _b: timeline.members(s, cut, interval_of(cut)),
    "redemptions": lambda s, cut, _a, _b: timeline.redemptions(s, cut),
    "membersByTier": lambda s, _cut, _a, _b: timeline.members_by_tier(s),
    "topRewards": lambda s, _cut, a, b: timeline.top_rewards(s, start=a, end=b, first=5),
}
CHARTS = ("points", "members", "redemptions")


def interval_of(cut: list[Bucket]) -> Interval:
    """The interval `cut` was made with (by the length of its widest bucket)."""
    widest = max(bucket.end - bucket.start for bucket in cut)
    if widest <= timedelta(days=1):
        return Interval.DAY
    return Interval.WEEK if widest <= timedelta(days=7) else Interval.MONTH


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def measure(engine: AsyncEngine, rounds: int, explain: bool) -> None:
    # What the sweep does every interval (bench servers run none): fold the rollup's changes.
    async with session_factory(engine).begin() as session:
        await rollup.fold(session)
    sessions = read_session_factory(engine)
    async with sessions() as session:
        newest = await session.scalar(select(func.max(LedgerEntry.created_at)))
    assert newest is not None, "the bench database is empty: python -m bench.seed"
    end = newest + timedelta(seconds=1)
    print(f"ledger up to {newest:%Y-%m-%d %H:%M}; {rounds} rounds after a warm-up; ms\n")
    print(f"{'window':<20} {'statement':<14} {'median':>8} {'worst':>8}")
    for index, (label, span, interval) in enumerate(WINDOWS):
        start = end - span
        cut = timeline.buckets(start, end, interval)

        async def run(name: str, cut: list[Bucket] = cut, start: datetime = start) -> None:
            async with sessions() as session:
                await FAMILIES[name](session, cut, start, end)

        if explain and index == 0:
            await explain_all(engine, cut)
        for name in FAMILIES:
            await run(name)  # warm-up
            times = [await timed(partial(run, name)) for _ in range(rounds)]
            print(f"{label:<20} {name:<14} {statistics.median(times):8.1f} {max(times):8.1f}")

        async def together(run: Callable[[str], Awaitable[None]] = run) -> None:
            await asyncio.gather(*(run(name) for name in CHARTS))

        await together()
        times = [await timed(together) for _ in range(rounds)]
        print(
            f"{label:<20} {'the 3 charts':<14} {statistics.median(times):8.1f} {max(times):8.1f}"
            f"   ({len(cut)} buckets)"
        )


async def explain_all(engine: AsyncEngine, cut: list[Bucket]) -> None:
    """EXPLAIN ANALYZE of each chart statement, captured as the services run them."""
    from sqlalchemy import event

    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        async with read_session_factory(engine)() as session:
            for name in CHARTS:
                await FAMILIES[name](session, cut, cut[0].start, cut[-1].end)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        for statement, parameters in seen:
            if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
                continue  # the services' SET LOCALs
            rows = await driver.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", *parameters)
            print("\n".join(row[0] for row in rows), "\n")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.timeline", description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--covering-index", action="store_true")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--no-jit", action="store_true")
    args = parser.parse_args(argv)
    database = Database()
    if args.covering_index:
        connection = await asyncpg.connect(database.dsn)
        try:
            await connection.execute(
                f"CREATE INDEX IF NOT EXISTS {COVERING} ON ledger_entries (created_at) "
                "INCLUDE (kind, status, points, member_id)"
            )
            await connection.execute("VACUUM (ANALYZE) ledger_entries")
        finally:
            await connection.close()
    engine = create_engine(database.sqlalchemy_url, pool_size=4)
    if args.no_jit:
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(
            database.sqlalchemy_url, connect_args={"server_settings": {"jit": "off"}}
        )
    try:
        await measure(engine, args.rounds, args.explain)
    finally:
        await engine.dispose()
        if args.covering_index:
            connection = await asyncpg.connect(database.dsn)
            try:
                await connection.execute(f"DROP INDEX IF EXISTS {COVERING}")
            finally:
                await connection.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
