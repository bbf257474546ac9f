"""Creating, migrating and seeding the benchmark database with set-based SQL.

The data, for N members and about E entries a member (N x E entries in all):

* the program: 1 point per 1.00 USD, points usable at once (pending_days 0), lots expiring 730
  days after they are earned (none expires during a run), a 100-point signup bonus, lifetime
  tiers (no window);
* tiers: Member (threshold 0, x1), Silver (125 x E, x1.25), Gold (250 x E, x1.5): with the
  point amounts below, roughly 40% / 40% / 20% of the members;
* member m has 1 to 2E-1 entries (E on average), all POSTED, spread from its join date (30 to
  360 days ago) to an hour ago: entry 1 is the SIGNUP bonus (100), every 10th a REDEMPTION of
  100 points, the rest PURCHASEs of 20 to 510 points, each with its `purchases` row and its
  idempotency record (scope "purchase", key = order id), as `recordPurchase` leaves them;
* lots (`remaining`) are drawn oldest first by the redemptions, as `draw` does; every member's
  cached balances, qualifying points, tier and next settlement equal what its entries say.

Everything is derived from hashes of ids, so two seeds of the same size are identical (but for
timestamps, relative to the moment of seeding). A `bench_seed` row records the size and the
highest seeded ids: a later run reuses the database and first deletes what earlier runs added.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from datetime import date

import asyncpg

from api.database import prepare_database
from bench.config import Database
from models import QUALIFYING_KINDS
from models.engine import create_engine, session_factory
from services import rollup

SEED_VERSION = 1
EXPIRY_DAYS = 730
SIGNUP_BONUS = 100
REDEMPTION_POINTS = 100
# Tables the benchmark writes to (and so resets), and every table to ANALYZE.
TABLES = (
    "tiers",
    "program",
    "members",
    "ledger_entries",
    "purchases",
    "idempotency_records",
    "member_events",
    "redemptions",
    "rewards",
    # The charts' rollup (services.rollup): index-only reads need the visibility map.
    "ledger_days",
    "member_days",
    "active_members",
    # The database leaderboard's ranks and totals sum its rows: never analyzed, the planner
    # took an index scan expecting one row (3.8 ms for a board's total, 1.3 ms once analyzed).
    "leaderboard_counts",
)
VACUUM_ANALYZE = [f"VACUUM (ANALYZE) {table}" for table in TABLES]
# Tables loaded without their secondary indexes and foreign keys (rebuilt afterwards).
BULK_TABLES = ("ledger_entries", "purchases", "idempotency_records")


@dataclass(frozen=True, slots=True)
class SeedSize:
    members: int
    entries_per_member: int


@dataclass(slots=True)
class SeedReport:
    reused: bool
    seconds: float  # of this run's seeding (or reset); the original seed's time when reused
    original_seed_seconds: float
    members: int
    ledger_entries: int
    purchases: int
    idempotency_records: int
    tiers: dict[str, int]  # members per tier
    steps: dict[str, float]  # seconds per step of this run

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def ensure_seeded(db: Database, size: SeedSize, *, reseed: bool = False) -> SeedReport:
    """The benchmark database at `size`, seeded now or reused (and reset to its seeded state)."""
    started = time.perf_counter()
    steps: dict[str, float] = {}
    meta = None if reseed else await _seed_meta(db)
    reusable = (
        meta is not None
        and meta["version"] == SEED_VERSION
        and meta["members"] == size.members
        and meta["entries_per_member"] == size.entries_per_member
    )
    if meta is not None and reusable:
        conn = await asyncpg.connect(db.dsn)
        try:
            before = await conn.fetchval("SELECT version_num FROM alembic_version")
            await _migrate(db)  # a no-op unless the application gained a migration since
            if await conn.fetchval("SELECT version_num FROM alembic_version") != before:
                # A migration may have rewritten a table (losing its visibility map, so every
                # index-only scan would visit the heap until autovacuum came by).
                await _timed(steps, "vacuum analyze", _vacuum_analyze(conn))
            # The rollup's triggers see inserts only: the days of the entries the reset deletes
            # are summed again after it (services.rollup.rebuild).
            since = await conn.fetchval(
                "SELECT min((created_at AT TIME ZONE 'UTC')::date) FROM ledger_entries"
                " WHERE id > $1",
                meta["max_entry_id"],
            )
            await _timed(steps, "reset", _reset_to_seed(conn, meta))
            if since is not None:  # the charts' rollup, from the first day entries were deleted
                await _timed(steps, "rollup", _rebuild_rollup(db, since))
            report = await _report(conn, reused=True, steps=steps, started=started)
        finally:
            await conn.close()
        report.original_seed_seconds = float(meta["seconds"])
        return report

    await _timed(steps, "create database", _recreate_database(db))
    await _timed(steps, "migrate", _migrate(db))
    # Two connections: the machine has two cores, and the big statements split in halves.
    pool = await asyncpg.create_pool(db.dsn, min_size=2, max_size=2, init=_tune_session)
    try:
        async with pool.acquire() as conn:
            await _timed(steps, "program and tiers", _seed_program(conn, size))
            await _timed(steps, "plan", _plan(conn, size))
            await conn.execute(f"ALTER TABLE members DISABLE TRIGGER {LEADERBOARD_INSERT}")
            await conn.execute(f"ALTER TABLE members DISABLE TRIGGER {LEADERBOARD_UPDATE}")
            await _timed(steps, "members", _seed_members(conn))
            # Loading without secondary indexes and foreign keys, then building them, is
            # several times faster than maintaining them row by row.
            deferred = await _drop_indexes_and_foreign_keys(conn, BULK_TABLES)
        half = size.members // 2
        await _timed(
            steps,
            "ledger entries",
            asyncio.gather(_seed_ledger(pool, 1, half), _seed_ledger(pool, half + 1, size.members)),
        )
        await _timed(
            steps,
            "purchases and idempotency records",
            asyncio.gather(_seed_purchases(pool), _seed_idempotency(pool)),
        )
        await _timed(steps, "indexes", _in_parallel(pool, deferred.indexes))
        await _timed(steps, "foreign keys", _in_parallel(pool, deferred.foreign_keys))
        async with pool.acquire() as conn:
            await _timed(steps, "member balances", _seed_balances(conn))
            await _timed(steps, "leaderboard counts", _count_leaderboards(conn))
            await conn.execute(f"ALTER TABLE members ENABLE TRIGGER {LEADERBOARD_INSERT}")
            await conn.execute(f"ALTER TABLE members ENABLE TRIGGER {LEADERBOARD_UPDATE}")
            await _reset_sequences(conn)
            await conn.execute("DROP TABLE seed_plan")
        await _timed(steps, "vacuum analyze", _in_parallel(pool, VACUUM_ANALYZE))
        async with pool.acquire() as conn:
            await _write_meta(conn, size, time.perf_counter() - started)
            report = await _report(conn, reused=False, steps=steps, started=started)
    finally:
        await pool.close()
    report.original_seed_seconds = report.seconds
    return report


async def _timed(steps: dict[str, float], name: str, work: Awaitable[object]) -> None:
    began = time.perf_counter()
    await work
    steps[name] = round(time.perf_counter() - began, 2)


# -- database ------------------------------------------------------------------------------


async def _recreate_database(db: Database) -> None:
    admin = await asyncpg.connect(db.admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{db.name}"')
    finally:
        await admin.close()


async def _migrate(db: Database) -> None:
    engine = create_engine(db.sqlalchemy_url, pool_size=1)
    try:
        await prepare_database(engine)  # Alembic to head, then the program row and entry tier
    finally:
        await engine.dispose()


async def _tune_session(conn: asyncpg.Connection) -> None:
    # Bulk loading: no waiting on WAL flushes, sorts and index builds in memory.
    await conn.execute("SET synchronous_commit = off")
    await conn.execute("SET work_mem = '256MB'")
    await conn.execute("SET maintenance_work_mem = '512MB'")


async def _seed_meta(db: Database) -> asyncpg.Record | None:
    try:
        conn = await asyncpg.connect(db.dsn)
    except asyncpg.InvalidCatalogNameError:
        return None
    try:
        exists = await conn.fetchval("SELECT to_regclass('bench_seed') IS NOT NULL")
        return await conn.fetchrow("SELECT * FROM bench_seed") if exists else None
    finally:
        await conn.close()


async def _write_meta(conn: asyncpg.Connection, size: SeedSize, seconds: float) -> None:
    await conn.execute(
        """
        CREATE TABLE bench_seed (
            version int NOT NULL,
            members int NOT NULL,
            entries_per_member int NOT NULL,
            max_member_id bigint NOT NULL,
            max_entry_id bigint NOT NULL,
            max_purchase_id bigint NOT NULL,
            max_idempotency_id bigint NOT NULL,
            max_api_key_id bigint NOT NULL,
            seconds double precision NOT NULL,
            seeded_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    await conn.execute(
        """
        INSERT INTO bench_seed (version, members, entries_per_member, max_member_id,
                                max_entry_id, max_purchase_id, max_idempotency_id,
                                max_api_key_id, seconds)
        SELECT $1, $2, $3,
               (SELECT coalesce(max(id), 0) FROM members),
               (SELECT coalesce(max(id), 0) FROM ledger_entries),
               (SELECT coalesce(max(id), 0) FROM purchases),
               (SELECT coalesce(max(id), 0) FROM idempotency_records),
               (SELECT coalesce(max(id), 0) FROM api_keys),
               $4
        """,
        SEED_VERSION,
        size.members,
        size.entries_per_member,
        seconds,
    )


# -- seeding -------------------------------------------------------------------------------


async def _seed_program(conn: asyncpg.Connection, size: SeedSize) -> None:
    await conn.execute(
        """
        UPDATE program SET name = 'Laurel Bench Rewards', currency = 'USD',
            points_per_currency_unit = 1, point_value = 0.01, pending_days = 0,
            expiry_days = $1, signup_bonus = $2, referral_bonus = 0, review_points = 25,
            social_share_points = 10, birthday_points = 200, tier_window_days = NULL,
            daily_activity_cap = 10
        """,
        EXPIRY_DAYS,
        SIGNUP_BONUS,
    )
    e = size.entries_per_member
    await conn.executemany(
        "INSERT INTO tiers (name, threshold, multiplier, benefits) VALUES ($1, $2, $3, $4)",
        [
            ("Silver", 125 * e, 1.25, '["Free shipping"]'),
            ("Gold", 250 * e, 1.5, '["Free shipping", "Early access"]'),
        ],
    )


async def _plan(conn: asyncpg.Connection, size: SeedSize) -> None:
    """One row a member: how many entries it gets, the id of the first, when it joined."""
    await conn.execute(
        """
        CREATE UNLOGGED TABLE seed_plan AS
        SELECT member_id, n, joined_at,
               (sum(n) OVER (ORDER BY member_id) - n)::bigint AS id_offset
        FROM (
            SELECT m AS member_id,
                   1 + abs(hashint4(m)::bigint) % (2 * $2 - 1) AS n,
                   date_trunc('second', now()) - interval '1 day'
                     * (30 + abs(hashint4(m + 7777777)::bigint) % 331) AS joined_at
            FROM generate_series(1, $1::int) AS m
        ) AS members
        """,
        size.members,
        size.entries_per_member,
    )


async def _seed_members(conn: asyncpg.Connection) -> None:
    # Balances are zero here and set from the entries once they exist (_seed_balances).
    await conn.execute(
        """
        INSERT INTO members (id, external_id, email, display_name, birthday, joined_at,
                             referral_code, referred_by_id, referral_rewarded, tier_id,
                             available, pending, lifetime_earned, redeemed, expired,
                             qualifying_points, next_settlement_at)
        SELECT member_id, 'ext-' || member_id, 'member' || member_id || '@bench.example',
               'Member ' || member_id,
               date '1960-01-01' + (abs(hashint4(member_id + 13)::bigint) % 16000)::int,
               joined_at, 'B' || member_id, NULL, false,
               (SELECT id FROM tiers WHERE threshold = 0), 0, 0, 0, 0, 0, 0, NULL
        FROM seed_plan
        ORDER BY member_id
        """
    )


async def _seed_ledger(pool: asyncpg.Pool, first_member: int, last_member: int) -> None:
    await pool.execute(
        """
        INSERT INTO ledger_entries (id, member_id, kind, status, points, remaining,
                                    description, reference, created_at, available_at,
                                    expires_at, reverses_entry_id, breakdown, actor)
        WITH generated AS (
            SELECT p.member_id, p.id_offset + k AS id,
                   CASE WHEN k = 1 THEN 'SIGNUP'
                        WHEN k % 10 = 0 THEN 'REDEMPTION'
                        ELSE 'PURCHASE' END AS kind,
                   p.joined_at + (now() - interval '1 hour' - p.joined_at) * (k - 1) / p.n
                     AS created_at
            FROM seed_plan AS p CROSS JOIN LATERAL generate_series(1, p.n) AS k
            WHERE p.member_id BETWEEN $4 AND $5
        ), scored AS (
            SELECT *,
                   CASE kind WHEN 'SIGNUP' THEN $1::int
                             WHEN 'REDEMPTION' THEN -$2::int
                             ELSE 20 + (abs(hashint8(id)::bigint) % 100) ^ 2 / 20
                   END::int AS points,
                   lpad((abs(hashint8(-id)::bigint) % 100)::text, 2, '0') AS cents
            FROM generated
        ), drawn AS (
            -- Redemptions draw lots oldest first (all lots expire EXPIRY_DAYS after earning).
            SELECT *,
                   sum(greatest(-points, 0)) OVER (PARTITION BY member_id) AS redeemed_total,
                   sum(greatest(points, 0)) OVER (PARTITION BY member_id ORDER BY id
                                                  ROWS UNBOUNDED PRECEDING)
                     - greatest(points, 0) AS earned_before
            FROM scored
        )
        SELECT id, member_id, kind, 'POSTED', points,
               CASE WHEN points > 0
                    THEN points - least(greatest(redeemed_total - earned_before, 0), points)
                    ELSE 0 END,
               description, reference, created_at,
               CASE WHEN points > 0 THEN created_at END,
               CASE WHEN points > 0 THEN created_at + interval '1 day' * $3 END,
               NULL,
               json_build_array(json_build_object('label', label, 'points', points)),
               CASE kind WHEN 'PURCHASE' THEN 'key:seed'
                         WHEN 'REDEMPTION' THEN 'member:' || member_id
                         ELSE 'system' END
        FROM (
            SELECT *,
                   CASE kind WHEN 'SIGNUP' THEN 'Welcome bonus'
                             WHEN 'REDEMPTION' THEN 'Redeemed: 1.00 USD off'
                             ELSE 'Purchase seed-' || id || ': ' || points || '.' || cents
                                  || ' USD' END AS description,
                   CASE kind WHEN 'SIGNUP' THEN 'Welcome bonus'
                             WHEN 'REDEMPTION' THEN 'Redeemed: 1.00 USD off'
                             ELSE '1 point per 1.00 USD spent' END AS label,
                   CASE WHEN kind = 'PURCHASE' THEN 'seed-' || id END AS reference
            FROM drawn
        ) AS described
        ORDER BY member_id, id
        """,
        SIGNUP_BONUS,
        REDEMPTION_POINTS,
        EXPIRY_DAYS,
        first_member,
        last_member,
    )


async def _seed_purchases(pool: asyncpg.Pool) -> None:
    # The amount's cents are in the description ("Purchase seed-7: 123.45 USD").
    await pool.execute(
        """
        INSERT INTO purchases (id, order_id, member_id, amount, occurred_at, entry_id,
                               points_earned, refunded_amount, points_reversed)
        SELECT id, reference, member_id,
               split_part(split_part(description, ': ', 2), ' ', 1)::numeric,
               created_at, id, points, 0, 0
        FROM ledger_entries
        WHERE kind = 'PURCHASE'
        ORDER BY id
        """
    )


async def _seed_idempotency(pool: asyncpg.Pool) -> None:
    # The fingerprint is not the one `recordPurchase` computes: replaying a seeded order id
    # through the API reports IDEMPOTENCY_CONFLICT. The benchmark never does.
    await pool.execute(
        """
        INSERT INTO idempotency_records (id, scope, key, fingerprint, entry_id, created_at)
        SELECT id, 'purchase', reference, md5(reference) || md5(reverse(reference)), id,
               created_at
        FROM ledger_entries
        WHERE kind = 'PURCHASE'
        ORDER BY id
        """
    )


async def _seed_balances(conn: asyncpg.Connection) -> None:
    await conn.execute(BALANCES_FROM_ENTRIES, list(QUALIFYING_KINDS))
    await conn.execute(LAST_PURCHASES)


# The leaderboards' per-score counts are kept by row triggers on `members` (migration 0019):
# a bulk load would upsert the same few count rows once per member in one transaction, each
# update walking the versions the ones before it left (a million members' balances took over
# 20 minutes). The seed turns the triggers off while it loads and counts once afterwards, as
# the migration's backfill does.
LEADERBOARD_INSERT = "members_leaderboard_counts_insert"
LEADERBOARD_UPDATE = "members_leaderboard_counts_update"
LEADERBOARD_COUNTS = [
    "DELETE FROM leaderboard_counts",
    *(
        "INSERT INTO leaderboard_counts (period, period_key, points, members) "
        f"SELECT '{period}', {key}, {points}, count(*) FROM members "
        f"WHERE NOT leaderboard_opt_out AND erased_at IS NULL AND {points} > 0 "
        f"GROUP BY {points if key == '0' else f'{key}, {points}'}"
        for period, key, points in (
            ("ALL_TIME", "0", "earned_points"),
            ("MONTHLY", "month_key", "month_points"),
            ("WEEKLY", "week_key", "week_points"),
        )
    ),
]


async def _count_leaderboards(conn: asyncpg.Connection) -> None:
    for statement in LEADERBOARD_COUNTS:
        await conn.execute(statement)


# Members' latest purchase (segments read it), from their purchases; only rows that differ.
LAST_PURCHASES = """
    UPDATE members AS m SET last_purchase_at = p.latest
    FROM (SELECT member_id, max(occurred_at) AS latest FROM purchases GROUP BY member_id) AS p
    WHERE m.id = p.member_id AND m.last_purchase_at IS DISTINCT FROM p.latest
"""


# Sets members' cached balances, tier and next settlement from their entries, writing only the
# rows that differ: used by the seed and by the reset before a reused run.
BALANCES_FROM_ENTRIES = """
    UPDATE members AS m
    SET available = s.available, pending = s.pending, lifetime_earned = s.lifetime_earned,
        redeemed = s.redeemed, expired = s.expired, qualifying_points = s.qualifying_points,
        earned_points = s.earned_points, next_settlement_at = s.next_settlement_at,
        tier_id = s.tier_id
    FROM (
        SELECT sums.*,
               (SELECT t.id FROM tiers AS t WHERE t.threshold <= sums.qualifying_points
                ORDER BY t.threshold DESC LIMIT 1) AS tier_id
        FROM (
            SELECT member_id,
                   coalesce(sum(points) FILTER (WHERE status = 'POSTED'), 0) AS available,
                   coalesce(sum(points) FILTER (WHERE status = 'PENDING'), 0) AS pending,
                   coalesce(sum(points) FILTER (WHERE status = 'POSTED' AND kind = ANY($1)), 0)
                     AS lifetime_earned,
                   coalesce(-sum(points) FILTER (WHERE status = 'POSTED'
                                                 AND kind = 'REDEMPTION'), 0) AS redeemed,
                   coalesce(-sum(points) FILTER (WHERE status = 'POSTED'
                                                 AND kind = 'EXPIRATION'), 0) AS expired,
                   coalesce(sum(points) FILTER (WHERE status <> 'VOIDED' AND kind = ANY($1)), 0)
                     AS qualifying_points,
                   -- All-time (the program has no tier window): equal to qualifying_points.
                   coalesce(sum(points) FILTER (WHERE status <> 'VOIDED' AND kind = ANY($1)), 0)
                     AS earned_points,
                   least(min(available_at) FILTER (WHERE status = 'PENDING'),
                         min(expires_at) FILTER (WHERE remaining > 0
                                                 AND status IN ('POSTED', 'PENDING')))
                     AS next_settlement_at
            FROM ledger_entries
            GROUP BY member_id
        ) AS sums
    ) AS s
    WHERE m.id = s.member_id
      AND (m.available, m.pending, m.lifetime_earned, m.redeemed, m.expired,
           m.qualifying_points, m.earned_points, m.next_settlement_at, m.tier_id)
          IS DISTINCT FROM
          (s.available, s.pending, s.lifetime_earned, s.redeemed, s.expired,
           s.qualifying_points, s.earned_points, s.next_settlement_at, s.tier_id)
"""


async def _reset_sequences(conn: asyncpg.Connection) -> None:
    for table in ("members", "ledger_entries", "purchases", "idempotency_records", "tiers"):
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
        )


@dataclass(slots=True)
class Deferred:
    """Statements that rebuild what `_drop_indexes_and_foreign_keys` dropped."""

    indexes: list[str] = field(default_factory=list)  # and unique constraints
    foreign_keys: list[str] = field(default_factory=list)


async def _drop_indexes_and_foreign_keys(
    conn: asyncpg.Connection, tables: tuple[str, ...]
) -> Deferred:
    """Drop the tables' foreign keys, unique constraints and plain indexes (not their primary
    keys), returning the DDL that recreates them exactly as the migrations made them."""
    deferred = Deferred()
    constraints = await conn.fetch(
        """
        SELECT conrelid::regclass::text AS tbl, conname, contype::text AS contype,
               pg_get_constraintdef(oid) AS definition
        FROM pg_constraint
        WHERE conrelid = ANY($1::regclass[]) AND contype IN ('f', 'u')
        """,
        list(tables),
    )
    indexes = await conn.fetch(
        """
        SELECT indexrelid::regclass::text AS name, pg_get_indexdef(indexrelid) AS definition
        FROM pg_index
        WHERE indrelid = ANY($1::regclass[]) AND NOT indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = indexrelid)
        """,
        list(tables),
    )
    for row in sorted(constraints, key=lambda r: r["contype"]):  # foreign keys first
        await conn.execute(f'ALTER TABLE {row["tbl"]} DROP CONSTRAINT "{row["conname"]}"')
        ddl = f'ALTER TABLE {row["tbl"]} ADD CONSTRAINT "{row["conname"]}" {row["definition"]}'
        (deferred.foreign_keys if row["contype"] == "f" else deferred.indexes).append(ddl)
    for row in indexes:
        await conn.execute(f"DROP INDEX {row['name']}")
        deferred.indexes.append(row["definition"])
    return deferred


async def _in_parallel(pool: asyncpg.Pool, statements: list[str]) -> None:
    """Run the statements, as many at a time as the pool has connections."""

    async def run(statement: str) -> None:
        async with pool.acquire() as conn:
            await conn.execute(statement)

    await asyncio.gather(*(run(statement) for statement in statements))


# The seed's lots, drawn oldest first by the seed's own redemptions (as in _seed_ledger), for
# the members whose lots later runs drew from (redemptions): restored by the reset.
SEEDED_LOTS = """
    UPDATE ledger_entries AS e
    SET remaining = s.remaining
    FROM (
        SELECT id,
               CASE WHEN points > 0
                    THEN points - least(greatest(redeemed_total - earned_before, 0), points)
                    ELSE 0 END AS remaining
        FROM (
            SELECT id, points,
                   sum(greatest(-points, 0)) OVER (PARTITION BY member_id) AS redeemed_total,
                   sum(greatest(points, 0)) OVER (PARTITION BY member_id ORDER BY id
                                                  ROWS UNBOUNDED PRECEDING)
                     - greatest(points, 0) AS earned_before
            FROM ledger_entries
            WHERE member_id = ANY($1::bigint[]) AND id <= $2
        ) AS w
    ) AS s
    WHERE e.id = s.id AND e.remaining <> s.remaining
"""


# Tables whose rows reference members or ledger entries, but for the seeded ones: the seed
# writes none of their rows (events, redemptions, refunds, badges awarded, completions, and
# whatever a later migration adds), so the reset deletes all of them.
RUN_TABLES_SQL = """
    SELECT DISTINCT conrelid::regclass::text AS name
    FROM pg_constraint
    WHERE contype = 'f' AND confrelid = ANY($1::regclass[]) AND NOT conrelid = ANY($2::regclass[])
    ORDER BY 1
"""


async def _reset_to_seed(conn: asyncpg.Connection, meta: asyncpg.Record) -> None:
    """Delete what earlier runs added (entries, purchases, claims, keys above the seed's ids;
    every row of the tables that reference members or entries but the seed never writes, and
    every reward and partner), restore the seeded lots of the members whose lots were drawn,
    and the cached balances of every member whose balances disagree with its entries, so
    every run starts from the same data."""
    added = await conn.fetchval(
        "SELECT count(*) FROM ledger_entries WHERE id > $1", meta["max_entry_id"]
    )
    run_tables = [
        row["name"]
        for row in await conn.fetch(
            RUN_TABLES_SQL, ["members", "ledger_entries"], ["members", *BULK_TABLES]
        )
    ]
    async with conn.transaction():
        # Writers (another run, anyone else's load on this database) wait until we are done.
        locked = ", ".join(
            ["members", *BULK_TABLES, *run_tables, "rewards", "partners", "api_keys"]
        )
        await conn.execute(f"LOCK TABLE {locked} IN EXCLUSIVE MODE")
        # No foreign-key triggers (the columns referencing ledger entries have no index: each
        # check would scan): referencing rows go first, and nothing may be left referencing a
        # deleted row (checked at the end).
        await conn.execute("SET LOCAL session_replication_role = replica")
        drew = [
            row["member_id"]
            for row in await conn.fetch(
                "SELECT DISTINCT member_id FROM ledger_entries WHERE id > $1 AND points < 0",
                meta["max_entry_id"],
            )
        ]
        for table in run_tables:
            await conn.execute(f"DELETE FROM {table}")
        await conn.execute(
            "DELETE FROM idempotency_records WHERE id > $1", meta["max_idempotency_id"]
        )
        await conn.execute("DELETE FROM purchases WHERE id > $1", meta["max_purchase_id"])
        await conn.execute("DELETE FROM ledger_entries WHERE id > $1", meta["max_entry_id"])
        await conn.execute("DELETE FROM rewards")
        await conn.execute("DELETE FROM partners")
        await conn.execute("DELETE FROM api_keys WHERE id > $1", meta["max_api_key_id"])
        if drew:  # lots drawn by redemptions (or expiries, reversals, debits)
            await conn.execute(SEEDED_LOTS, drew, meta["max_entry_id"])
        await conn.execute(BALANCES_FROM_ENTRIES, list(QUALIFYING_KINDS))
        await conn.execute(LAST_PURCHASES)
        dangling = await _dangling_references(conn)
        if dangling:  # e.g. a new table referencing rewards: the reset must learn to delete it
            raise RuntimeError(f"the reset would leave rows referencing deleted ones: {dangling}")
    if added:
        await _vacuum_analyze(conn)


async def _vacuum_analyze(conn: asyncpg.Connection) -> None:
    for statement in VACUUM_ANALYZE:
        await conn.execute(statement)


async def _rebuild_rollup(db: Database, since: date) -> None:
    engine = create_engine(db.sqlalchemy_url, pool_size=1)
    try:
        async with session_factory(engine).begin() as session:
            await rollup.rebuild(session, since)
    finally:
        await engine.dispose()


async def _dangling_references(conn: asyncpg.Connection) -> dict[str, int]:
    """Rows whose foreign key names a row that is gone, per constraint, in every table but the
    bulk ones (their rows above the seed's ids are deleted, and seeded rows reference only
    seeded rows): a migration adding, say, a table that references rewards shows here."""
    foreign_keys = await conn.fetch(
        """
        SELECT c.conname, c.conrelid::regclass::text AS child, a.attname AS child_column,
               c.confrelid::regclass::text AS parent, p.attname AS parent_column
        FROM pg_constraint AS c
        JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        JOIN pg_attribute AS p ON p.attrelid = c.confrelid AND p.attnum = c.confkey[1]
        WHERE c.contype = 'f' AND cardinality(c.conkey) = 1
          AND c.connamespace = 'public'::regnamespace
        """
    )
    found = {}
    for fk in foreign_keys:
        if fk["child"] in BULK_TABLES:
            continue
        count = await conn.fetchval(
            f'SELECT count(*) FROM {fk["child"]} AS c WHERE c."{fk["child_column"]}" IS NOT NULL '
            f"AND NOT EXISTS (SELECT 1 FROM {fk['parent']} AS p "
            f'WHERE p."{fk["parent_column"]}" = c."{fk["child_column"]}")'
        )
        if count:
            found[fk["conname"]] = count
    return found


async def _report(
    conn: asyncpg.Connection, *, reused: bool, steps: dict[str, float], started: float
) -> SeedReport:
    counts = await conn.fetchrow(
        """
        SELECT (SELECT count(*) FROM members) AS members,
               (SELECT count(*) FROM ledger_entries) AS ledger_entries,
               (SELECT count(*) FROM purchases) AS purchases,
               (SELECT count(*) FROM idempotency_records) AS idempotency_records
        """
    )
    tiers = await conn.fetch(
        "SELECT t.name, count(m.id) AS members FROM tiers AS t "
        "LEFT JOIN members AS m ON m.tier_id = t.id GROUP BY t.name, t.threshold "
        "ORDER BY t.threshold"
    )
    return SeedReport(
        reused=reused,
        seconds=round(time.perf_counter() - started, 2),
        original_seed_seconds=0.0,
        members=counts["members"],
        ledger_entries=counts["ledger_entries"],
        purchases=counts["purchases"],
        idempotency_records=counts["idempotency_records"],
        tiers={row["name"]: row["members"] for row in tiers},
        steps=steps,
    )


async def _main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Seed (or reset) the benchmark database.")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--entries-per-member", type=int, default=20)
    parser.add_argument("--reseed", action="store_true")
    args = parser.parse_args()
    report = await ensure_seeded(
        Database(), SeedSize(args.members, args.entries_per_member), reseed=args.reseed
    )
    print(report.as_dict())


if __name__ == "__main__":
    asyncio.run(_main())
