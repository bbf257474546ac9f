"""`laurel import members` on PostgreSQL: a 200,000-row file of new members with balances and
tiers, against raw asyncpg COPY baselines measured in the same run.

    .venv/bin/python -m bench.import_members [--rows 200000] [--rounds 1] [--batch-size 2000]

Each round:

1. drops and creates its own database, `laurel_bench_import`, migrates it with
   `api.database.prepare_database`, and sets the program up as `bench/seed.py` does: 730-day
   expiry, tiers Member (0), Silver (2,500) and Gold (5,000);
2. writes the file (laurel format, deterministic): every row a new member with a name, an
   externalId and a joined date; 1 in 3 with a birthday; a balance of 0 to 4,990 points (1 in
   50 rows with none); 1 in 4 with lifetime points and 1 in 5 with a tier name;
3. **baselines** on the same database, undone afterwards: `COPY` of the same member rows
   into `members` (its indexes and search trigger included) with asyncpg: the floor of
   creating the members at all; and `COPY` of every row the import writes (members, ledger
   entries, member events, idempotency claims, audit entries), from tuples built in advance:
   the ceiling for the same volume of rows, with no rules applied;
4. the import itself: `services.importing.members.import_members` (what the CLI calls), and
   the members/s;
5. the same file again, which must change nothing (row counts of every table compared);
6. checks: every member in, the sum of balances equal to the file's, and every cached balance
   equal to the sums of its entries and lots (one SQL statement over all members).

Prints the rates, the import's ratio to each baseline, and the re-run's time; writes the same
as JSON to `bench/results/import_members-<time>.json`. Exits 1 if a check fails. A round of
200,000 rows takes about 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from api.cli_data import IMPORT_GC_THRESHOLDS
from api.database import prepare_database
from bench.config import RESULTS_DIR, Database
from models.engine import create_engine, session_factory
from schema.ids import encode_id
from services.clock import SystemClock
from services.importing.members import DEFAULT_BATCH, ImportReport, import_members
from services.members import referral_codes
from services.program import create_tier, update_program

DB = Database(name="laurel_bench_import")
HEADER = "email,name,externalId,birthday,joinedAt,points,lifetimePoints,tier"
TABLES = ("members", "ledger_entries", "member_events", "idempotency_records", "audit_entries")


@dataclass
class FileRow:
    email: str
    name: str
    external_id: str
    birthday: date | None
    joined_at: datetime
    points: int | None
    lifetime: int | None
    tier: str | None


def file_rows(count: int, now: datetime) -> list[FileRow]:
    rows = []
    for i in range(count):
        rows.append(
            FileRow(
                email=f"member{i}@bench.example",
                name=f"Member {i}",
                external_id=f"shop-{i}",
                birthday=date(1950 + i % 50, 1 + i % 12, 1 + i % 28) if i % 3 == 0 else None,
                joined_at=now - timedelta(days=1 + i % 1500, seconds=i % 86_400),
                points=None if i % 50 == 0 else (i * 7919) % 500 * 10,
                lifetime=(i * 104_729) % 12_000 if i % 4 == 0 else None,
                tier=("Silver", "Gold")[i % 2] if i % 5 == 0 else None,
            )
        )
    return rows


def write_file(path: Path, rows: list[FileRow]) -> None:
    with path.open("w") as out:
        out.write(HEADER + "\n")
        for r in rows:
            out.write(
                f"{r.email},{r.name},{r.external_id},"
                f"{r.birthday.isoformat() if r.birthday else ''},"
                f"{r.joined_at.isoformat()},{'' if r.points is None else r.points},"
                f"{'' if r.lifetime is None else r.lifetime},{r.tier or ''}\n"
            )


# ---------------------------------------------------------------- database


async def recreate() -> dict[str, int]:
    """A fresh, migrated database with the bench program; returns the tiers' ids by name."""
    admin = await asyncpg.connect(DB.admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB.name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB.name}"')
    finally:
        await admin.close()
    engine = create_engine(DB.sqlalchemy_url, pool_size=1)
    try:
        await prepare_database(engine)
        async with session_factory(engine).begin() as session:
            await update_program(session, {"expiry_days": 730})
            await create_tier(session, name="Silver", threshold=2500, multiplier=1.25, benefits=[])
            await create_tier(session, name="Gold", threshold=5000, multiplier=1.5, benefits=[])
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(DB.dsn)
    try:
        return {name: pk for pk, name in await conn.fetch("SELECT id, name FROM tiers")}
    finally:
        await conn.close()


async def counts(conn: asyncpg.Connection) -> dict[str, int]:
    return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in TABLES}


async def empty(conn: asyncpg.Connection) -> None:
    """Undo a baseline: the import starts from the same empty tables (then ANALYZE, as a
    fresh database would be after autovacuum)."""
    await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    await conn.execute("VACUUM ANALYZE")


# ---------------------------------------------------------------- baselines


def member_records(
    rows: list[FileRow], tiers: dict[str, int], now: datetime
) -> list[tuple[Any, ...]]:
    return [
        (
            i + 1,
            r.email,
            r.external_id,
            r.name,
            r.birthday,
            r.joined_at,
            code,
            False,
            tiers[r.tier] if r.tier else tiers["Member"],
            tiers[r.tier] if r.tier else None,
            r.points or 0,
            0,
            0,
            0,
            0,
            0,
            0,
            now + timedelta(days=730) if r.points else None,
        )
        for i, (r, code) in enumerate(zip(rows, _unique_codes(len(rows)), strict=True))
    ]


def _unique_codes(count: int) -> list[str]:
    """Referral codes without the rare repeat (about 1 in 40 runs of 200,000: the import
    plans such a batch again; a COPY would fail)."""
    codes = list(dict.fromkeys(referral_codes(count)))
    while len(codes) < count:
        codes = list(dict.fromkeys(codes + referral_codes(count - len(codes))))
    return codes


MEMBER_COLUMNS = [
    "id",
    "email",
    "external_id",
    "display_name",
    "birthday",
    "joined_at",
    "referral_code",
    "referral_rewarded",
    "tier_id",
    "tier_floor_id",
    "available",
    "pending",
    "lifetime_earned",
    "redeemed",
    "expired",
    "qualifying_points",
    "earned_points",
    "next_settlement_at",
]


async def copy_members(conn: asyncpg.Connection, records: list[tuple[Any, ...]]) -> float:
    started = time.perf_counter()
    async with conn.transaction():
        await conn.copy_records_to_table("members", records=records, columns=MEMBER_COLUMNS)
    return time.perf_counter() - started


async def copy_everything(
    conn: asyncpg.Connection, rows: list[FileRow], records: list[tuple[Any, ...]], now: datetime
) -> float:
    """COPY of every row the import writes, built before the clock starts."""
    entries, events, claims, audits = [], [], [], []
    expires = now + timedelta(days=730)
    entry_id = 0
    for i, r in enumerate(rows):
        member_id = i + 1
        if r.points:
            entry_id += 1
            breakdown = json.dumps(
                [{"label": f"Imported balance: bench.csv, line {i + 2}", "points": r.points}]
            )
            entries.append(
                (
                    entry_id,
                    member_id,
                    "ADJUSTMENT",
                    "POSTED",
                    r.points,
                    r.points,
                    "Adjustment: imported balance",
                    f"import:bench.csv:{i + 2}",
                    now,
                    now,
                    expires,
                    breakdown,
                    "import",
                )
            )
            events.append(
                (
                    member_id,
                    "POINTS_UPDATED",
                    entry_id,
                    json.dumps(
                        {
                            "available": r.points,
                            "pending": 0,
                            "lifetimeEarned": 0,
                            "redeemed": 0,
                            "expired": 0,
                        }
                    ),
                    now,
                )
            )
        # Keys shaped like the import's: the file, the line, a digest of the content.
        digest = hashlib.sha256(r.email.encode()).hexdigest()
        key = f"{'0' * 32}:{i + 2:09d}:{digest}"
        claims.append(("import:members", key, digest, entry_id if r.points else None, now))
        audits.append(
            (
                now,
                "import members",
                encode_id("Member", member_id),
                None,
                json.dumps(
                    {
                        "email": "m***@bench.example",
                        "displayName": "M***",
                        "available": r.points or 0,
                        "tier": r.tier or "Member",
                    }
                ),
            )
        )
    started = time.perf_counter()
    async with conn.transaction():
        await conn.copy_records_to_table("members", records=records, columns=MEMBER_COLUMNS)
        await conn.copy_records_to_table(
            "ledger_entries",
            records=entries,
            columns=[
                "id",
                "member_id",
                "kind",
                "status",
                "points",
                "remaining",
                "description",
                "reference",
                "created_at",
                "available_at",
                "expires_at",
                "breakdown",
                "actor",
            ],
        )
        await conn.copy_records_to_table(
            "member_events",
            records=events,
            columns=["member_id", "kind", "entry_id", "data", "created_at"],
        )
        await conn.copy_records_to_table(
            "idempotency_records",
            records=claims,
            columns=["scope", "key", "fingerprint", "entry_id", "created_at"],
        )
        await conn.copy_records_to_table(
            "audit_entries",
            records=audits,
            columns=["at", "operation", "target_id", "before", "after"],
        )
    return time.perf_counter() - started


# ---------------------------------------------------------------- the import


async def run_import(path: Path, batch_size: int) -> tuple[float, ImportReport]:
    engine = create_engine(DB.sqlalchemy_url, pool_size=2)
    try:
        started = time.perf_counter()
        with path.open(newline="", encoding="utf-8-sig") as lines:
            report = await import_members(
                session_factory(engine),
                lines,
                source=path.name,
                clock=SystemClock(),
                batch_size=batch_size,
            )
        return time.perf_counter() - started, report
    finally:
        await engine.dispose()


CHECK = """
SELECT count(*) FROM members AS m
LEFT JOIN (
    SELECT member_id,
           sum(points) FILTER (WHERE status = 'POSTED') AS posted,
           sum(remaining) FILTER (WHERE status = 'POSTED') AS posted_left
    FROM ledger_entries GROUP BY member_id
) AS s ON s.member_id = m.id
WHERE m.available <> coalesce(s.posted, 0) OR m.available <> coalesce(s.posted_left, 0)
   OR m.pending <> 0 OR m.lifetime_earned <> 0 OR m.earned_points <> 0
"""


@dataclass
class RoundResult:
    rows: int
    copy_members_per_s: float
    copy_everything_per_s: float
    import_seconds: float
    import_members_per_s: float
    ratio_to_copy_members: float
    ratio_to_copy_everything: float
    rerun_seconds: float
    rerun_changed_nothing: bool
    checks_passed: bool
    problems: list[str]


async def one_round(count: int, batch_size: int, directory: Path) -> RoundResult:
    tiers = await recreate()
    now = datetime.now(UTC)
    rows = file_rows(count, now)
    path = directory / "bench-members.csv"
    write_file(path, rows)
    problems: list[str] = []

    conn = await asyncpg.connect(DB.dsn)
    try:
        records = member_records(rows, tiers, now)
        copy_members_s = await copy_members(conn, records)
        await empty(conn)
        copy_all_s = await copy_everything(conn, rows, records, now)
        await empty(conn)
        del records

        seconds, report = await run_import(path, batch_size)
        after = await counts(conn)
        rerun_seconds, again = await run_import(path, batch_size)
        changed_nothing = await counts(conn) == after and again.already_imported == count

        if report.created != count or report.skipped:
            problems.append(f"created {report.created}, skipped {report.skipped} of {count}")
        expected = sum(r.points or 0 for r in rows)
        total = await conn.fetchval("SELECT coalesce(sum(available), 0) FROM members")
        if total != expected:
            problems.append(f"balances add up to {total}, the file to {expected}")
        wrong = await conn.fetchval(CHECK)
        if wrong:
            problems.append(f"{wrong} member(s) whose cached balances differ from their entries")
        if not changed_nothing:
            problems.append("the re-run changed something")
    finally:
        await conn.close()
    return RoundResult(
        rows=count,
        copy_members_per_s=count / copy_members_s,
        copy_everything_per_s=count / copy_all_s,
        import_seconds=seconds,
        import_members_per_s=count / seconds,
        ratio_to_copy_members=copy_members_s / seconds,
        ratio_to_copy_everything=copy_all_s / seconds,
        rerun_seconds=rerun_seconds,
        rerun_changed_nothing=changed_nothing,
        checks_passed=not problems,
        problems=problems,
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH)
    args = parser.parse_args()
    gc.set_threshold(*IMPORT_GC_THRESHOLDS)  # as `laurel import members` runs

    results = []
    with tempfile.TemporaryDirectory() as directory:
        for number in range(1, args.rounds + 1):
            result = await one_round(args.rows, args.batch_size, Path(directory))
            results.append(result)
            print(
                f"round {number}: import {result.import_members_per_s:,.0f} members/s "
                f"({result.import_seconds:.1f} s); "
                f"COPY members {result.copy_members_per_s:,.0f}/s, "
                f"COPY every row {result.copy_everything_per_s:,.0f} members/s; "
                f"re-run {result.rerun_seconds:.1f} s",
                flush=True,
            )

    def median(name: str) -> float:
        return float(statistics.median(getattr(r, name) for r in results))

    print()
    print(
        f"import members, {args.rows:,} new members with balances, batches of {args.batch_size:,}"
    )
    print(f"  import                        {median('import_members_per_s'):>10,.0f} members/s")
    print(
        f"  COPY of the member rows       {median('copy_members_per_s'):>10,.0f} members/s"
        f"   import at {median('ratio_to_copy_members'):.2f}x"
    )
    print(
        f"  COPY of every row it writes   {median('copy_everything_per_s'):>10,.0f} members/s"
        f"   import at {median('ratio_to_copy_everything'):.2f}x"
    )
    print(
        f"  re-run of the same file       {median('rerun_seconds'):>10.1f} s "
        f"(changed nothing: {all(r.rerun_changed_nothing for r in results)})"
    )
    failed = [p for r in results for p in r.problems]
    for problem in failed:
        print(f"  CHECK FAILED: {problem}")
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"import_members-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.write_bytes(orjson.dumps([asdict(r) for r in results], option=orjson.OPT_INDENT_2))
    print(f"  results in {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
