"""Leaderboards: members ranked by the points they earned all time, this month, this week.

Points are the contract's *earned* points: ledger entries of the earning kinds less REVERSAL
entries, not VOIDED, created inside the period (UTC calendar month; ISO week from Monday 00:00
UTC). Members with points > 0 are ranked; ties share the better rank (1, 2, 2, 4) and are
listed by member id ascending. Only display names are exposed. Members that opted out of the
leaderboards or were erased are on no board (`sql.unlisted`); an opted-out member's own
standing is still answered (where it would rank), an erased member's is not.

* `periods`: `Period`, `period_start` / `period_end` / `period_label`, the `Standing` and
  `Board` values.
* `sql`: `board_from_database` (one statement; `board_direct` runs it straight on asyncpg on
  PostgreSQL), `period_points` (one statement for a batch of members), `ranked_members` (a
  rebuild's input). PostgreSQL and SQLite.
* `store`: `LeaderboardStore`, the boards as Redis sorted sets: reads in one round trip (a
  Lua script answering in JSON), writes as absolute, version-guarded scores in one script call
  per batch, rebuilds into a temporary key swapped in with RENAME, lazily under a SET NX EX
  lock.
* `snapshot`: `RankingCache`, the database's whole ranking shared in process for a few
  seconds: what the facade answers from while Redis is away.
* `facade`: `Leaderboards`, what the API uses: Redis when configured and reachable, else the
  database, never an error for a Redis outage; `mark_dirty` + a background writer.

Integration: build `Leaderboards(read_sessions, LeaderboardStore(connect_redis(url)) or None,
clock, direct=DirectWriter.on(engine, ...))`, `await start()` / `await stop()` in the app's
lifespan, and call `mark_dirty(member_ids)` after every commit that wrote qualifying entries
(purchases, refunds, activities, referrals, signup bonuses, ...) or changed a member's display
name, leaderboard opt-out or erasure (the app does it for every commit announced with
`events.touched`).
"""

from services.leaderboards.facade import REDIS_FAILURES, Leaderboards, connect_redis
from services.leaderboards.periods import (
    Board,
    Period,
    Standing,
    period_end,
    period_label,
    period_start,
)
from services.leaderboards.snapshot import Ranking, RankingCache
from services.leaderboards.sql import (
    MemberPoints,
    board_from_database,
    period_points,
    ranked_members,
)
from services.leaderboards.store import (
    LeaderboardBusy,
    LeaderboardStore,
    RebuildLockLost,
    decode_member,
    encode_member,
)

__all__ = [
    "REDIS_FAILURES",
    "Board",
    "LeaderboardBusy",
    "LeaderboardStore",
    "Leaderboards",
    "MemberPoints",
    "Period",
    "Ranking",
    "RankingCache",
    "RebuildLockLost",
    "Standing",
    "board_from_database",
    "connect_redis",
    "decode_member",
    "encode_member",
    "period_end",
    "period_label",
    "period_points",
    "period_start",
    "ranked_members",
]
