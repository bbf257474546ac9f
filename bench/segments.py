"""Segment member counts on a large program: `memberCount` for typical rules, timed as the API
computes it (services.segments, the SQL it compiles), next to a baseline measured in the same
run: a plain `SELECT count(*) FROM members` (reading every member once, the least a count of
a rule over member rows can cost).

    python -m bench.segments                     # 1,000,000 members, 5 entries each
    python -m bench.segments --members 100000 --entries-per-member 20 --rounds 5

It seeds (or reuses) its own database, `laurel_bench_segments` (BENCH_PG_DATABASE changes it),
with bench/seed.py's program. The count cache is not used: every figure is a cold count.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text

from bench.config import Database
from bench.seed import SeedSize, ensure_seeded
from models import Member, Segment
from models.engine import create_engine, session_factory
from services import segments

RULES: dict[str, dict[str, Any]] = {
    "points >= 2,500": {"all": [{"availablePoints": {"min": 2500}}]},
    "joined this year, born in March": {
        "all": [
            {"joinedAfter": datetime(2026, 1, 1, tzinfo=UTC).isoformat()},
            {"birthdayMonth": 3},
        ]
    },
    "bought in the last 30 days": {"all": [{"purchaseCount": {"lastDays": 30, "min": 1}}]},
    "spent >= 100 in 90 days": {"all": [{"purchaseAmount": {"lastDays": 90, "min": 100.0}}]},
    "lapsed: no purchase for 60+ days": {"all": [{"daysSinceLastPurchase": {"min": 60}}]},
    "any of three": {
        "any": [
            {"availablePoints": {"min": 4000}},
            {"purchaseCount": {"lastDays": 7, "min": 2}},
            {"birthdayMonth": 12},
        ]
    },
}


async def _timed(run: Any, rounds: int) -> tuple[list[float], Any]:
    seconds, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = await run()
        seconds.append(time.perf_counter() - started)
    return seconds, result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--entries-per-member", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    db = Database()
    if db.name == "laurel_bench":
        db = replace(db, name="laurel_bench_segments")
    seeded = await ensure_seeded(db, SeedSize(args.members, args.entries_per_member))
    print(
        f"database {db.name}: {seeded.members:,} members, {seeded.ledger_entries:,} entries "
        f"({'reused' if seeded.reused else f'seeded in {seeded.seconds:.0f} s'})"
    )
    engine = create_engine(db.sqlalchemy_url, pool_size=2)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    try:
        async with sessions() as session:
            await session.execute(text("ANALYZE"))

            async def everyone() -> int:
                return int(await session.scalar(select(func.count()).select_from(Member)) or 0)

            base, total = await _timed(everyone, args.rounds)
            baseline = statistics.median(base)
            print(f"\n{'rule':38} {'members':>10} {'p50 ms':>8} {'max ms':>8} {'/ count(*)':>10}")
            print(
                f"{'count(*) of every member (baseline)':38} {total:>10,} "
                f"{baseline * 1000:>8.0f} {max(base) * 1000:>8.0f} {1.0:>9.2f}x"
            )
            for name, rule in RULES.items():
                segment = Segment(id=0, name=name, rule=rule, created_at=now, updated_at=now)

                async def count(segment: Segment = segment) -> int:
                    return await segments.member_count(session, segment, now)

                times, found = await _timed(count, args.rounds)
                p50 = statistics.median(times)
                print(
                    f"{name:38} {found:>10,} {p50 * 1000:>8.0f} {max(times) * 1000:>8.0f} "
                    f"{p50 / baseline:>9.2f}x"
                )
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
