"""PostgreSQL's own counters for the benchmark database, to turn into per-request figures.

Backends publish their counters at most about once a second, so `read` waits a little first:
the figures are for telling 1 from 3 transactions a request, not for precision.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from bench.config import Database

FLUSH_WAIT_SECONDS = 1.5
COUNTERS = ("sessions", "xact_commit", "xact_rollback", "tup_returned", "tup_fetched")


async def _read(db: Database) -> dict[str, int]:
    await asyncio.sleep(FLUSH_WAIT_SECONDS)
    conn = await asyncpg.connect(db.dsn)
    try:
        row = await conn.fetchrow(
            f"SELECT {', '.join(COUNTERS)} FROM pg_stat_database WHERE datname = $1", db.name
        )
    finally:
        await conn.close()
    return {name: int(row[name]) for name in COUNTERS}


def read(db: Database) -> dict[str, int]:
    return asyncio.run(_read(db))


def per_request(before: dict[str, int], after: dict[str, int], requests: int) -> dict[str, Any]:
    """Connections opened and transactions per request between two readings (our own
    reading connection counts as one session)."""
    n = max(requests, 1)
    sessions = after["sessions"] - before["sessions"] - 1
    transactions = (after["xact_commit"] - before["xact_commit"]) + (
        after["xact_rollback"] - before["xact_rollback"]
    )
    return {
        "db_connections_opened": sessions,
        "db_connections_per_request": round(sessions / n, 3),
        "db_transactions_per_request": round(transactions / n, 2),
    }
