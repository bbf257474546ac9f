"""Finding members on 1,000,000 of them: `members(search:)` over HTTP against the same SQL run
straight on asyncpg, measured in the same run.

    .venv/bin/python -m bench.member_search [--members 1000000] [--requests 300]
        [--warmup 20] [--reseed] [--explain] [--search-statistics N] [--balance-indexes]

1. Seeds its own PostgreSQL database, `laurel_bench_search` (dropped and created; reused when it
   already holds a seed of the same size), migrated with `api.database.prepare_database`, with
   set-based SQL (`INSERT ... SELECT` over `generate_series`): N members with varied emails
   (five local-part shapes over 150 first and 150 last names, some accented, ending in the
   member's number, on a dozen domains, gmail most of all), display names ("Jane Doe"),
   externalIds (`cus_...` hex, Shopify `gid://...`, or none), unique referral codes, join
   dates over three years, skewed balances (ties common), three tiers, 1% SUSPENDED. The
   search table is filled as its trigger would (with `services.member_search.search_text`),
   its trigram index built once after the load. No ledger: balances are not backed by
   entries here, which no search reads.
2. Starts Laurel (`uvicorn --factory api.app:create_app`, one worker, uvloop, httptools,
   `LAUREL_ENV=production`) on a free loopback port, with an admin key.
3. For each workload, a few hundred requests, one at a time, each with its own term drawn
   from the members' own data; every term runs twice in turn (order alternating): through
   Laurel (httpx, HTTP/1.1 keep-alive, the admin key, `members(search:, first: 20)` with
   `totalCount`, the page's edges and pageInfo) and as the same statements straight on asyncpg
   (compiled from `services.member_search`, prepared, the page then the count, on one
   connection of a pool). Every Laurel answer is checked: no `errors`, the raw page's ids and
   count. Prints p50/p99 of both and Laurel/raw.
   * `email prefix`: the start of a member's email ("jane.doe12", 6 characters or more);
   * `name substring`: 3-5 characters from inside a first or last name ("mith"), in varied case;
   * `search + tier`: a name substring with the Gold tier's ID;
   * `short search`: 2 characters (no trigram: the index cannot help);
   * `no search`: the newest 20 (ix_members_joined_at_id), then `AVAILABLE_POINTS` DESC and
     `LIFETIME_POINTS` ASC (no index on balances, on purpose), without `totalCount`.
4. `--explain` prints `EXPLAIN (ANALYZE, BUFFERS)` of the page (and count) of each workload's
   first request. Two experiments, on this database only: `--search-statistics N` sets the
   statistics target of `member_search.text` for the run (the planner's estimate of a term's
   matches; -1, the default, is what the migration leaves), `--balance-indexes` adds B-tree
   indexes on (available, id) and (lifetime_earned, id) for the run and drops them after.

Loopback only; bounded: seeding 1,000,000 members takes about 70 s on 2 cores (reused after),
the requests 3-4 minutes at the default 300 (100 for the filtered and short searches, 30 for
each order by points).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import Select
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from api.database import prepare_database
from bench.servers import start_uvicorn, stop, wait_until_ready
from models import KeyRole
from models.engine import create_engine, session_factory
from schema.ids import decode_id, encode_id
from services import access
from services.member_search import (
    Direction,
    MemberFilter,
    OrderField,
    Ordering,
    count_statement,
    page_statement,
    search_text,
)

PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")
DATABASE = "laurel_bench_search"
DSN = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{DATABASE}"
ADMIN_DSN = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"
SQLALCHEMY_URL = f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{DATABASE}"
SEED_VERSION = 1
PAGE = 20
REFERRAL_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # as services.members draws them

FIRST_NAMES = """
James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard
Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew Betty
Anthony Margaret Mark Sandra Donald Ashley Steven Kimberly Paul Emily Andrew Donna Joshua
Michelle Kenneth Carol Kevin Amanda Brian Dorothy George Melissa Timothy Deborah Ronald
Stephanie Edward Rebecca Jason Sharon Jeffrey Laura Ryan Cynthia Jacob Kathleen Gary Amy
Nicholas Angela Eric Shirley Jonathan Anna Stephen Brenda Larry Pamela Justin Emma Scott Nicole
Brandon Helen Benjamin Samantha Samuel Katherine Gregory Christine Alexander Debra Frank Rachel
Patrick Carolyn Raymond Janet Jack Catherine Dennis Maria Jerry Heather Tyler Diane Aaron Ruth
Jose Julie Adam Olivia Nathan Joyce Henry Virginia Douglas Victoria Zachary Kelly Peter Lauren
Kyle Christina Ethan Joan Walter Evelyn Noah Judith Jeremy Megan Christian Andrea Keith Cheryl
Roger Hannah Terry Jacqueline Gerald Martha Harold Gloria Sean Teresa Austin Ann Carl Sara
Arthur Madison Jane Zoë José Chloé Renée Søren Björn Aurélie
""".split()  # noqa: SIM905 (a list of names to read)
LAST_NAMES = """
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez
Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris
Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill
Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips
Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers
Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson
Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders
Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell Coleman Butler
Henderson Barnes Gonzales Fisher Vasquez Simmons Romero Jordan Patterson Alexander Hamilton
Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina
Aguilar Stevens Murray Ford Castro Marshall Owens Harrison Fernandez McDonald Woods Washington
Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns Doe Müller Østergaard Nuñez
""".split()  # noqa: SIM905 (a list of names to read)
# Weighted by repetition: most shoppers use a few big providers.
DOMAINS = (
    ["gmail.com"] * 8
    + ["yahoo.com"] * 3
    + ["outlook.com"] * 2
    + ["hotmail.com"] * 2
    + ["icloud.com"] * 2
    + ["proton.me", "aol.com", "gmx.de", "orange.fr", "example.org", "acme-corp.com"]
)

Measure = Callable[[str], Awaitable[None]]


# ---------------------------------------------------------------- seeding


async def seed(members: int, *, reseed: bool) -> tuple[bool, float]:
    """`laurel_bench_search` with `members` members; (reused, seconds)."""
    started = time.perf_counter()
    if not reseed and await _seeded_members() == members:
        engine = create_engine(SQLALCHEMY_URL, pool_size=1)
        try:
            await prepare_database(engine)  # newer migrations first
        finally:
            await engine.dispose()
        return True, time.perf_counter() - started
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
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await conn.executemany(
            "INSERT INTO tiers (name, threshold, multiplier, benefits) VALUES ($1, $2, $3, $4)",
            [("Silver", 5_000, 1.25, '["Free shipping"]'), ("Gold", 20_000, 1.5, "[]")],
        )
        # The search table is filled in one statement and indexed once, after the load: a row
        # trigger and a GIN index kept up row by row would take several times longer.
        index_sql = await conn.fetchval(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'member_search' "
            "AND indexname = 'ix_member_search_text'"
        )
        await conn.execute("DROP INDEX ix_member_search_text")
        await conn.execute("ALTER TABLE members DISABLE TRIGGER members_search")
        await _insert_members(conn, members)
        text_sql = search_text().compile(
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
        await conn.execute(
            f"INSERT INTO member_search (member_id, text) SELECT id, {text_sql} FROM members"
        )
        await conn.execute("ALTER TABLE members ENABLE TRIGGER members_search")
        await conn.execute(index_sql)
        await conn.execute("SELECT setval(pg_get_serial_sequence('members', 'id'), $1)", members)
        await conn.execute("VACUUM ANALYZE members")
        await conn.execute("VACUUM ANALYZE member_search")
        await conn.execute("VACUUM ANALYZE tiers")
        await conn.execute(
            "CREATE TABLE bench_search_seed (version int NOT NULL, members int NOT NULL)"
        )
        await conn.execute("INSERT INTO bench_search_seed VALUES ($1, $2)", SEED_VERSION, members)
    finally:
        await conn.close()
    return False, time.perf_counter() - started


async def _insert_members(conn: asyncpg.Connection, members: int) -> None:
    # Every choice is a hash of the member's number, so two seeds of one size are alike.
    # Emails and externalIds end in (or are derived one-to-one from) the number: unique.
    # Referral codes: the number times a constant prime to 31, modulo 31^8, in base 31.
    await conn.execute(
        """
        INSERT INTO members (id, external_id, email, display_name, birthday, joined_at,
                             referral_code, referred_by_id, referral_rewarded, tier_id,
                             available, pending, lifetime_earned, redeemed, expired,
                             qualifying_points, next_settlement_at, status)
        SELECT i,
               CASE WHEN h.x % 10 < 6
                    THEN 'cus_' || lpad(to_hex((i * 2654435761) % 4294967296), 8, '0')
                    WHEN h.x % 10 < 8 THEN 'gid://shopify/Customer/' || (6000000000 + i * 13)
               END,
               CASE h.y % 5
                    WHEN 0 THEN n.f || '.' || n.l || i
                    WHEN 1 THEN left(n.f, 1) || n.l || i
                    WHEN 2 THEN n.f || '_' || n.l || i
                    WHEN 3 THEN n.l || '.' || n.f || i
                    ELSE n.f || i
               END || '@' || ($3::text[])[1 + h.z % cardinality($3::text[])],
               n.first || ' ' || n.last,
               date '1950-01-01' + (h.x % 20000)::int,
               now() - interval '1100 days' + interval '1095 days' * i / $4::int
                 + interval '1 second' * (h.y % 7200),
               (SELECT string_agg(substr($5, 1 + ((i::bigint * 578680007981) % 852891037441
                                                  / (31::bigint ^ k)::bigint % 31)::int, 1), ''
                                  ORDER BY k)
                FROM generate_series(0, 7) AS k),
               NULL, false,
               CASE WHEN p.lifetime >= 20000 THEN (SELECT id FROM tiers WHERE name = 'Gold')
                    WHEN p.lifetime >= 5000 THEN (SELECT id FROM tiers WHERE name = 'Silver')
                    ELSE (SELECT id FROM tiers WHERE threshold = 0) END,
               p.lifetime * (h.w % 101) / 100, 0, p.lifetime,
               p.lifetime - p.lifetime * (h.w % 101) / 100, 0, p.lifetime, NULL,
               CASE WHEN h.w % 100 = 7 THEN 'SUSPENDED' ELSE 'ACTIVE' END
        FROM generate_series(1, $4::int) AS i
        CROSS JOIN LATERAL (
            SELECT abs(hashint4(i)::bigint) AS x, abs(hashint4(i + 1000003)::bigint) AS y,
                   abs(hashint4(i + 2000003)::bigint) AS z, abs(hashint4(i + 3000017)::bigint) AS w,
                   abs(hashint4(i + 4000037)::bigint) AS v
        ) AS h
        CROSS JOIN LATERAL (
            SELECT ($1::text[])[1 + h.x / 7 % cardinality($1::text[])] AS first,
                   ($2::text[])[1 + h.y / 11 % cardinality($2::text[])] AS last
        ) AS names
        CROSS JOIN LATERAL (  -- emails without accents
            SELECT names.first, names.last,
                   translate(lower(names.first), 'ëéøöüñ', 'eeooun') AS f,
                   translate(lower(names.last), 'ëéøöüñ', 'eeooun') AS l
        ) AS n
        CROSS JOIN LATERAL (SELECT ((h.v % 1000) ^ 3 / 50000)::int * 2 AS lifetime) AS p
        """,
        FIRST_NAMES,
        LAST_NAMES,
        DOMAINS,
        members,
        REFERRAL_ALPHABET,
    )


async def _seeded_members() -> int | None:
    try:
        conn = await asyncpg.connect(DSN)
    except asyncpg.InvalidCatalogNameError:
        return None
    try:
        if not await conn.fetchval("SELECT to_regclass('bench_search_seed') IS NOT NULL"):
            return None
        row = await conn.fetchrow("SELECT version, members FROM bench_search_seed")
        return int(row["members"]) if row and row["version"] == SEED_VERSION else None
    finally:
        await conn.close()


# ---------------------------------------------------------------- workloads

DOCUMENT = """query FindMembers($search: String, $tier: ID, $orderBy: MemberOrder, $first: Int) {
  members(search: $search, tier: $tier, orderBy: $orderBy, first: $first) {
    %s
    pageInfo { hasNextPage endCursor }
    edges { cursor node { id email displayName externalId referralCode joinedAt status
                          balance { available lifetimeEarned } } }
  }
}"""


@dataclass(frozen=True, slots=True)
class Request:
    """One search: the GraphQL variables and the same search as `services.member_search` takes."""

    variables: dict[str, Any]
    found: MemberFilter
    ordering: Ordering


@dataclass(slots=True)
class Workload:
    name: str
    requests: list[Request]
    with_count: bool = True
    laurel_ms: list[float] = field(default_factory=list)
    raw_ms: list[float] = field(default_factory=list)
    matches: list[int] = field(default_factory=list)


def email_prefix(rng: random.Random, email: str) -> str:
    """The start of the email: at least 6 characters (or the whole local part), often with
    some of its digits ("jane.doe12")."""
    local = email.split("@", 1)[0]
    return email[: rng.randint(min(6, len(local)), len(local) + 1)]


def name_substring(rng: random.Random, name: str, length: tuple[int, int] = (3, 5)) -> str:
    """3-5 characters from inside a first or last name ("mith"), in the case the shopper's
    support agent happens to type."""
    words = [w for w in name.split() if len(w) >= length[0] + 1] or name.split()
    word = rng.choice(words)
    if len(word) <= length[0]:
        term = word
    else:
        start = rng.randint(1, len(word) - length[0])
        term = word[start : start + rng.randint(length[0], min(length[1], len(word) - start))]
    return rng.choice([term.lower(), term.upper(), term])


def searching(term: str, *, tier: int | None = None) -> Request:
    variables: dict[str, Any] = {"search": term, "first": PAGE}
    if tier is not None:
        variables["tier"] = encode_id("Tier", tier)
    return Request(variables, MemberFilter(search=term, tier_id=tier), Ordering())


def ordered(field_name: OrderField, direction: Direction) -> Request:
    order = {"field": field_name.value, "direction": direction.value}
    return Request(
        {"orderBy": order, "first": PAGE}, MemberFilter(), Ordering(field_name, direction)
    )


async def workloads(conn: asyncpg.Connection, members: int, requests: int) -> list[Workload]:
    rng = random.Random(20261206)
    sample = await conn.fetch(
        "SELECT email, display_name FROM members WHERE id = ANY($1::bigint[])",
        [rng.randint(1, members) for _ in range(requests)],
    )
    gold = int(await conn.fetchval("SELECT id FROM tiers WHERE name = 'Gold'"))
    few = max(requests // 3, 10)
    return [
        Workload("email prefix", [searching(email_prefix(rng, r["email"])) for r in sample]),
        Workload(
            "name substring", [searching(name_substring(rng, r["display_name"])) for r in sample]
        ),
        Workload(
            "search + tier",
            [searching(name_substring(rng, r["display_name"]), tier=gold) for r in sample[:few]],
        ),
        Workload(
            "short search (2)",
            [searching(name_substring(rng, r["display_name"], (2, 2))) for r in sample[:few]],
        ),
        Workload(
            "newest (no search)",
            [ordered(OrderField.JOINED_AT, Direction.DESC)] * few,
            with_count=False,
        ),
        Workload(
            "available points DESC",
            [ordered(OrderField.AVAILABLE_POINTS, Direction.DESC)] * max(requests // 10, 10),
            with_count=False,
        ),
        Workload(
            "lifetime points ASC",
            [ordered(OrderField.LIFETIME_POINTS, Direction.ASC)] * max(requests // 10, 10),
            with_count=False,
        ),
    ]


# ---------------------------------------------------------------- measuring


def compiled(statement: Select[Any], dialect: Dialect) -> tuple[str, list[Any]]:
    """The statement as Laurel sends it to asyncpg: its SQL (the search pattern written in, as
    `services.member_search` asks) and positional parameters. `dialect` is a connected
    engine's: it knows how the server reads backslashes in literals."""
    sql = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    return sql.string, [sql.params[name] for name in sql.positiontup or ()]


class Raw:
    """The baseline: the same statements straight on asyncpg (prepared, cached by asyncpg),
    the page then the count, on one pooled connection."""

    def __init__(self, pool: asyncpg.Pool, dialect: Dialect) -> None:
        self.pool = pool
        self.dialect = dialect

    async def run(self, request: Request, *, with_count: bool) -> tuple[list[int], int | None]:
        page_sql, page_args = compiled(
            page_statement(
                "postgresql", request.found, request.ordering, after=None, limit=PAGE + 1
            ),
            self.dialect,
        )
        count_sql, count_args = compiled(count_statement("postgresql", request.found), self.dialect)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(page_sql, *page_args)
            total = await conn.fetchval(count_sql, *count_args) if with_count else None
        return [int(row["id"]) for row in rows[:PAGE]], total


class Laurel:
    """`members(...)` over HTTP with the admin key."""

    def __init__(self, client: httpx.AsyncClient, url: str, admin_key: str) -> None:
        self.client = client
        self.url = url
        self.headers = {"authorization": f"Bearer {admin_key}"}

    async def run(self, request: Request, *, with_count: bool) -> tuple[list[int], int | None]:
        document = DOCUMENT % ("totalCount" if with_count else "")
        response = await self.client.post(
            self.url + "/graphql",
            json={"query": document, "variables": request.variables},
            headers=self.headers,
        )
        body = response.json()
        if response.status_code != 200 or "errors" in body:
            raise RuntimeError(f"Laurel answered {response.status_code}: {body}")
        page = body["data"]["members"]
        ids = [int(encode_id_pk(edge["node"]["id"])) for edge in page["edges"]]
        return ids, page.get("totalCount")


def encode_id_pk(global_id: str) -> int:
    decoded = decode_id(global_id)
    if decoded is None or decoded[0] != "Member":
        raise RuntimeError(f"not a Member ID: {global_id}")
    return decoded[1]


async def measure(workload: Workload, laurel: Laurel, raw: Raw, *, warmup: int) -> None:
    """Every request through both, in turn (the order alternating); the answers compared."""
    for request in workload.requests[:warmup]:
        await raw.run(request, with_count=workload.with_count)
        await laurel.run(request, with_count=workload.with_count)
    for number, request in enumerate(workload.requests):
        sides: list[tuple[list[float], Any]] = [
            (workload.raw_ms, raw),
            (workload.laurel_ms, laurel),
        ]
        if number % 2:
            sides.reverse()
        answers = []
        for latencies, side in sides:
            began = time.perf_counter()
            answers.append(await side.run(request, with_count=workload.with_count))
            latencies.append(1000 * (time.perf_counter() - began))
        if answers[0] != answers[1]:
            raise RuntimeError(f"{workload.name}: different answers for {request.variables}")
        total = answers[0][1]
        workload.matches.append(total if total is not None else -1)


def percentile(values: list[float], fraction: float) -> float:
    ordered_values = sorted(values)
    return ordered_values[min(len(ordered_values) - 1, int(len(ordered_values) * fraction))]


async def explain(conn: asyncpg.Connection, workload: Workload, dialect: Dialect) -> None:
    request = workload.requests[0]
    statements = [
        (
            "page",
            page_statement(
                "postgresql", request.found, request.ordering, after=None, limit=PAGE + 1
            ),
        )
    ]
    if workload.with_count:
        statements.append(("count", count_statement("postgresql", request.found)))
    for kind, statement in statements:
        sql, args = compiled(statement, dialect)
        plan = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
        print(f"\n--- {workload.name}, {kind}: {request.variables}")
        print("\n".join(row[0] for row in plan))


# ---------------------------------------------------------------- the run


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.member_search", description=__doc__)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300, help="per search workload")
    parser.add_argument("--warmup", type=int, default=20, help="requests not counted, per workload")
    parser.add_argument("--reseed", action="store_true", help="seed again even if it fits")
    parser.add_argument("--explain", action="store_true", help="print the plans")
    parser.add_argument(
        "--search-statistics",
        type=int,
        default=-1,
        help="statistics target of member_search.text for this run (-1: the default, as "
        "migrated); a higher one gives the planner better estimates of a search's matches",
    )
    parser.add_argument(
        "--balance-indexes",
        action="store_true",
        help="try indexes on (available, id) and (lifetime_earned, id) for this run (dropped "
        "after): Laurel has none, on purpose",
    )
    args = parser.parse_args(argv)
    if not 30 <= args.requests <= 2_000:
        parser.error("--requests must be between 30 and 2,000")

    reused, seconds = await seed(args.members, reseed=args.reseed)
    print(
        f"database {DATABASE}: {args.members:,} members "
        f"({'reused' if reused else 'seeded'} in {seconds:.1f} s)",
        flush=True,
    )
    conn = await asyncpg.connect(DSN)
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=2)
    engine = create_engine(SQLALCHEMY_URL, pool_size=1)
    workdir = Path(tempfile.mkdtemp(prefix="laurel-search-"))
    server = None
    try:
        target = int(args.search_statistics)
        await conn.execute(f"ALTER TABLE member_search ALTER COLUMN text SET STATISTICS {target}")
        await conn.execute("ANALYZE member_search")
        if args.balance_indexes:
            for name, column in (("available", "available"), ("lifetime", "lifetime_earned")):
                await conn.execute(
                    f"CREATE INDEX IF NOT EXISTS bench_members_{name}_id ON members ({column}, id)"
                )
        async with session_factory(engine).begin() as session:
            issued = await access.create_api_key(
                session, role=KeyRole.ADMIN, name="bench member search", now=datetime.now(UTC)
            )
        server = start_uvicorn(
            "laurel",
            "api.app:create_app",
            env={
                "LAUREL_DATABASE_URL": SQLALCHEMY_URL,
                "LAUREL_ENV": "production",
                "LAUREL_JWT_SECRET": secrets.token_urlsafe(32),
                "LAUREL_SWEEP_INTERVAL_SECONDS": "0",
            },
            log_path=workdir / "laurel.log",
            factory=True,
        )
        wait_until_ready(server, path="/readyz")
        chosen = await workloads(conn, args.members, args.requests)
        async with httpx.AsyncClient(timeout=30.0) as client:
            laurel, raw = Laurel(client, server.url, issued.secret), Raw(pool, engine.dialect)
            for workload in chosen:
                began = time.perf_counter()
                await measure(
                    workload, laurel, raw, warmup=min(args.warmup, len(workload.requests))
                )
                print(
                    f"  {workload.name:22} {len(workload.requests):4} requests "
                    f"({time.perf_counter() - began:5.1f} s)",
                    flush=True,
                )
        report(chosen, args)
        if args.explain:
            for workload in chosen:
                await explain(conn, workload, engine.dialect)
        return 0
    finally:
        if server is not None:
            stop(server)
        if args.balance_indexes:
            await conn.execute("DROP INDEX IF EXISTS bench_members_available_id")
            await conn.execute("DROP INDEX IF EXISTS bench_members_lifetime_id")
        await conn.close()
        await pool.close()
        await engine.dispose()


def report(chosen: list[Workload], args: argparse.Namespace) -> None:
    print(
        f"\nOne request at a time; Laurel: HTTP to uvicorn on 127.0.0.1 (admin key, "
        f"first: {PAGE}); raw: the same SQL on asyncpg"
    )
    print(
        f"search statistics target {args.search_statistics}, balance indexes "
        f"{'on' if args.balance_indexes else 'off'}"
    )
    print(
        f"  {'workload':22} {'n':>4} {'matches p50':>11} {'raw p50':>8} {'raw p99':>8} "
        f"{'laurel p50':>10} {'laurel p99':>10} {'ratio p50':>9} {'ratio p99':>9}"
    )
    for w in chosen:
        raw50, raw99 = percentile(w.raw_ms, 0.5), percentile(w.raw_ms, 0.99)
        our50, our99 = percentile(w.laurel_ms, 0.5), percentile(w.laurel_ms, 0.99)
        matches = statistics.median(w.matches) if w.with_count else float("nan")
        print(
            f"  {w.name:22} {len(w.requests):4} {matches:11,.0f} {raw50:8.1f} {raw99:8.1f} "
            f"{our50:10.1f} {our99:10.1f} {our50 / raw50:8.2f}x {our99 / raw99:8.2f}x"
        )
    print("  (milliseconds; ratio = laurel / raw, lower is better; matches: totalCount)")


def run() -> None:
    try:
        import uvloop
    except ImportError:
        sys.exit(asyncio.run(main()))
    sys.exit(uvloop.run(main()))


if __name__ == "__main__":
    run()
