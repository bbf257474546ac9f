"""Where a request's CPU goes: Laurel in-process, the bench's exact requests, cProfile.

    .venv/bin/python -m bench.profile_requests [--workload dashboard|leaderboard|earn|redeem]
        [--requests 2000 --concurrency 8 --top 40]

It seeds (or reuses) a small PostgreSQL database of its own, ``laurel_profile`` (2,000 members
x ~20 entries, with ``bench.seed``: the same data shapes as the benchmark), builds the app with
``api.app.create_app`` and ``LAUREL_ENV=production`` settings, and sends the workload's
request as ``bench/workloads.py`` builds it for wrk straight to the ASGI app: ``dashboard`` (the
``Dashboard`` query as random members with their own JWTs), ``leaderboard`` (the
``Leaderboard`` query alike, from Redis as ``laurel-redis`` serves it: BENCH_REDIS_URL, the
all-time board built first under a prefix of the run's own, deleted at the end; with
``--from-database`` as ``laurel-db`` serves it, without Redis), ``earn``
(``recordPurchase`` with a service key, random members, a unique orderId each) or ``redeem``
(``redeemReward`` as one of 10 hot members, the two bench rewards in turn, a unique key each).
No sockets, no HTTP parsing, no wrk, so what is left is Laurel's own work (Starlette, the
GraphQL view, authentication, strawberry and graphql-core, SQLAlchemy and asyncpg, orjson).
Every answer is checked: status 200, no ``errors``, and no ``userErrors`` for the mutations.

It prints:

1. CPU microseconds per request (process time, no profiler) and requests per CPU-second;
2. for the dashboard, the same for each stage on its own (authentication, context,
   ``schema.execute``, JSON), each measured in a loop of its own;
3. a cProfile of N requests (CPU time as the timer, so waiting for PostgreSQL is not counted):
   the top functions by cumulative and by own time, in microseconds per request.

``--database laurel_bench --reuse`` profiles against the benchmark's database instead (with
``--reuse`` a database is only migrated, never reseeded). Only a loopback PostgreSQL is used
(``BENCH_PG_*`` as in bench).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import orjson
from pydantic import SecretStr

from api.app import AppState, create_app
from api.database import prepare_database
from api.settings import Settings
from bench.config import Database
from bench.run import REDIS_URL, build_board, delete_keys
from bench.seed import SeedSize, ensure_seeded
from bench.workloads import (
    DASHBOARD_QUERY,
    LEADERBOARD_QUERY,
    WORKLOADS,
    Credentials,
    earn_request,
    make_credentials,
    redeem_request,
)
from models.engine import create_engine
from schema.context import Context

DASHBOARD_BODY = orjson.dumps({"query": DASHBOARD_QUERY})
LEADERBOARD_BODY = orjson.dumps({"query": LEADERBOARD_QUERY})
PROFILE_PATH = "/tmp/laurel_{workload}.prof"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=WORKLOADS, default="dashboard")
    parser.add_argument("--database", default="laurel_profile")
    parser.add_argument("--reuse", action="store_true", help="use the database as it is")
    parser.add_argument("--members", type=int, default=2_000)
    parser.add_argument("--entries-per-member", type=int, default=20)
    parser.add_argument("--token-pool", type=int, default=500, help="members with a JWT")
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--top", type=int, default=40, help="rows of each profile table")
    parser.add_argument(
        "--timer", choices=("cpu", "wall"), default="cpu", help="cProfile's clock (default cpu)"
    )
    parser.add_argument("--no-stages", action="store_true", help="skip the per-stage loops")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument(
        "--from-database",
        action="store_true",
        help="the leaderboard as `laurel-db` serves it (no Redis), not as `laurel-redis`",
    )
    args = parser.parse_args()
    if not 1 <= args.requests <= 1_000_000 or not 1 <= args.concurrency <= 256:
        parser.error("requests must be 1-1,000,000 and concurrency 1-256")
    return args


# -- one request, straight to the ASGI app -------------------------------------------------------


def _scope(authorization: str, body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", authorization.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


class Driver:
    """Sends one workload's requests to an ASGI app; checks every answer."""

    def __init__(self, app: Any, workload: str, credentials: Credentials, seed: int = 7) -> None:
        self.app = app
        self.workload = workload
        self.credentials = credentials
        self.authorizations = [f"Bearer {token}" for token in credentials.member_tokens]
        self.random = random.Random(seed)
        self.run_id = secrets.token_hex(4)
        self.sent = 0

    def request(self) -> tuple[str, bytes]:
        """(Authorization, body) of the next request, as wrk's Lua scripts build them."""
        creds, self.sent = self.credentials, self.sent + 1
        if self.workload == "dashboard":
            return self.random.choice(self.authorizations), DASHBOARD_BODY
        if self.workload == "leaderboard":
            return self.random.choice(self.authorizations), LEADERBOARD_BODY
        if self.workload == "earn":
            member = self.random.choice(creds.earn_members)
            order = f"profile-{self.run_id}-{self.sent}"
            _, headers, body = earn_request("laurel", creds, member, order, 12.5)
        else:
            index = self.random.randrange(len(creds.redeem_members))
            in_turn = creds.rewards.in_turn
            reward = in_turn[self.sent % len(in_turn)]
            key = f"profile-{self.run_id}-{self.sent}"
            _, headers, body = redeem_request("laurel", creds, index, reward, key)
        return headers["Authorization"], body.encode()

    async def one(self) -> None:
        authorization, request_body = self.request()
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:  # the app only reads the body once; a second read means a disconnect
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": request_body, "more_body": False}

        status = 0
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(_scope(authorization, request_body), receive, send)
        body = b"".join(chunks)
        mutation = self.workload in ("earn", "redeem")
        refused = mutation and b'"userErrors":[]' not in body
        if status != 200 or b'"errors"' in body or refused:
            raise RuntimeError(f"bad answer ({status}): {body[:500]!r}")

    async def run(self, requests: int, concurrency: int) -> None:
        remaining = requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await self.one()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


# -- measuring -----------------------------------------------------------------------------------


async def cpu_per_call(
    work: Callable[[], Awaitable[object]], calls: int, concurrency: int = 1
) -> tuple[float, float]:
    """(CPU µs per call, wall µs per call) of `calls` runs of `work`, `concurrency` at a time."""
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await work()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (
        (time.process_time() - cpu) / calls * 1e6,
        (time.perf_counter() - wall) / calls * 1e6,
    )


async def stages(
    state: AppState, driver: Driver, calls: int, concurrency: int
) -> list[tuple[str, float]]:
    """CPU µs per call of each stage of a request, each in a loop of its own (`concurrency`
    at a time: waiting for PostgreSQL costs CPU in wake-ups, fewer when requests overlap)."""
    authenticator, schema, runtime = state.authenticator, state.schema, state.runtime
    token = driver.authorizations[0]
    viewer = await authenticator.viewer(token)
    request: Any = None  # the resolvers of the dashboard never look at the request

    async def authenticate() -> None:
        await authenticator.viewer(driver.random.choice(driver.authorizations))

    async def context() -> None:
        Context(request=request, response=None, runtime=runtime, viewer=viewer)

    async def execute() -> None:
        context = Context(request=request, response=None, runtime=runtime, viewer=viewer)
        result = await schema.execute(DASHBOARD_QUERY, context_value=context)
        assert not result.errors, result.errors

    result = await schema.execute(
        DASHBOARD_QUERY,
        context_value=Context(request=request, response=None, runtime=runtime, viewer=viewer),
    )
    payload = {"data": result.data}

    async def encode() -> None:
        orjson.dumps(payload)

    measured = []
    for name, work in (
        ("authenticate (Authorization header -> Viewer)", authenticate),
        ("Context + Loaders", context),
        ("schema.execute (the document, 2 SQL reads)", execute),
        ("orjson.dumps(result)", encode),
    ):
        await cpu_per_call(work, max(calls // 10, 50), concurrency)  # warm up
        measured.append((name, (await cpu_per_call(work, calls, concurrency))[0]))
    return measured


def print_profile(profile: cProfile.Profile, requests: int, top: int) -> None:
    stats = pstats.Stats(profile)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"\nprofiled: {total / requests * 1e6:,.0f} µs per request (with profiler overhead)")
    rows = []
    for (path, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = path
        for marker in ("site-packages/", "/work/main/", "lib/python3"):
            if marker in where:
                where = where.split(marker, 1)[1]
        rows.append((f"{where}:{line}({name})", calls, tottime, cumtime))
    for title, key in (("cumulative", 3), ("own time (tottime)", 2)):
        print(f"\ntop {top} by {title}: µs/request, calls/request, function")
        for label, calls, tottime, cumtime in sorted(rows, key=lambda r: r[key], reverse=True)[
            :top
        ]:
            value = cumtime if key == 3 else tottime
            print(f"  {value / requests * 1e6:8.1f}  {calls / requests:7.2f}  {label[:150]}")


# -- main ----------------------------------------------------------------------------------------


async def prepare(args: argparse.Namespace) -> tuple[Database, Credentials]:
    db = replace(Database(), name=args.database)
    if not db.host.startswith("127.") and db.host != "localhost":
        raise SystemExit("only a loopback PostgreSQL is used")
    if args.reuse:  # as it is, but at the application's latest schema
        engine = create_engine(db.sqlalchemy_url, pool_size=1)
        try:
            await prepare_database(engine)
        finally:
            await engine.dispose()
    else:
        if args.database == "laurel_bench":
            raise SystemExit("use --reuse with the benchmark's database: it is never reseeded here")
        report = await ensure_seeded(db, SeedSize(args.members, args.entries_per_member))
        verb = "reused" if report.reused else "seeded"
        print(f"{verb} {db.name}: {report.members:,} members, {report.ledger_entries:,} entries")
    credentials = await make_credentials(
        db,
        dashboard_pool=args.token_pool,
        earn_pool=args.token_pool * 20,
        redeem_pool=10 if args.workload == "redeem" else 0,
        seed=random.randrange(1 << 30),
    )
    return db, credentials


async def main_async(args: argparse.Namespace) -> None:
    db, credentials = await prepare(args)
    os.environ["LAUREL_ENV"] = "production"
    # The leaderboard as `laurel-redis` serves it: from Redis (BENCH_REDIS_URL), the board
    # built first under a prefix of this run's own, deleted at the end.
    from_redis = args.workload == "leaderboard" and not args.from_database
    redis_prefix = f"profile-{secrets.token_hex(4)}:" if from_redis else None
    settings = Settings(
        env="production",
        database_url=db.sqlalchemy_url,
        jwt_secret=SecretStr(credentials.jwt_secret),
        sweep_interval_seconds=0,
    )
    if redis_prefix is not None:
        settings = settings.model_copy(
            update={"redis_url": REDIS_URL, "redis_prefix": redis_prefix}
        )
    if redis_prefix is not None:
        print(f"leaderboard: {await build_board(db, redis_prefix):,} members ranked in Redis")
    try:
        await run_profile(args, settings, credentials)
    finally:
        if redis_prefix is not None:
            await delete_keys(redis_prefix)


async def run_profile(
    args: argparse.Namespace, settings: Settings, credentials: Credentials
) -> None:
    app = create_app(settings)
    state: AppState = app.state.laurel
    driver = Driver(app, args.workload, credentials)
    # The server's own startup and shutdown (what uvicorn runs around the requests).
    async with app.router.lifespan_context(app):
        await driver.run(args.warmup, args.concurrency)
        cpu, wall = await cpu_per_call(driver.one, args.requests, args.concurrency)
        print(
            f"\n{args.requests} {args.workload} requests, {args.concurrency} in flight, "
            "no profiler:\n"
            f"  {cpu:,.0f} CPU µs per request ({1e6 / cpu:,.0f} requests per CPU-second), "
            f"{wall:,.0f} wall µs per request"
        )
        if args.workload == "dashboard" and not args.no_stages:
            print("\nstages, each in a loop of its own (CPU µs per call):")
            for name, micros in await stages(state, driver, args.requests, args.concurrency):
                print(f"  {micros:8.1f}  {name}")
        if args.no_profile:
            return
        timer = time.process_time if args.timer == "cpu" else time.perf_counter
        profile = cProfile.Profile(timer)
        profile.enable()
        await driver.run(args.requests, args.concurrency)
        profile.disable()
        print_profile(profile, args.requests, args.top)
        path = PROFILE_PATH.format(workload=args.workload)
        profile.dump_stats(path)
        print(f"\nfull profile: {path} (python -m pstats {path})")


def main() -> None:
    args = parse_args()
    try:
        import uvloop  # the servers run on uvloop
    except ImportError:
        asyncio.run(main_async(args))
    else:
        uvloop.run(main_async(args))


if __name__ == "__main__":
    main()
