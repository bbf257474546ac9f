"""What rate limiting costs: CPU per check of the limiter, and the app with limits on vs off.

    .venv/bin/python -m bench.rate_limits [--checks 20000 --requests 4000 --rounds 3]

1. The limiter alone (`api.rate_limits.RateLimits.check`, as `get_context` calls it), for 10,
   1,000 and 100,000 distinct members, the event loop turning between checks as it does
   between requests (the loop's own cost, measured alone, is subtracted): in process (the
   default without Redis, and what the benchmarks run), with `limits`' own
   `MemoryStorage` for comparison (why Laurel counts in its own `LocalCounters`), and in Redis
   when one answers at BENCH_REDIS_URL (default redis://127.0.0.1:6379/0, a key prefix of its
   own, deleted afterwards).
2. The whole app in process (`create_app`, production settings, an SQLite file; no sockets):
   `{ __typename }` as 1,000 members with their JWTs, the cheapest authenticated request, so
   the limiter's share is as large as it gets; CPU per request with limits off, on (the
   defaults) in process and, when Redis answers, on in Redis, in rotating order round after
   round, and each as a ratio to off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import FixedWindowRateLimiter
from pydantic import SecretStr
from redis.asyncio import Redis

from api.app import create_app
from api.rate_limits import RateLimits
from api.settings import Settings
from schema.context import Role, Viewer
from schema.ids import encode_id
from services import access

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# High enough that no check is refused: what is measured is the common case, a call served.
LIMIT = parse("1000000/minute")


async def loop_turn_cost(n: int) -> float:
    started = time.process_time()
    for _ in range(n):
        await asyncio.sleep(0)
    return time.process_time() - started


async def checks_cpu(limits: RateLimits, callers: int, n: int) -> float:
    """µs of CPU per check, for `n` checks spread over `callers` members."""
    viewers = [Viewer(role=Role.MEMBER, member_id=i, actor=f"member:{i}") for i in range(callers)]
    for viewer in viewers[: min(callers, 10_000)]:  # their windows exist, as under load
        await limits.check(viewer, None)
    await limits.settle()
    order = [viewers[random.randrange(callers)] for _ in range(n)]
    started = time.process_time()
    for viewer in order:
        assert await limits.check(viewer, "127.0.0.1") is None
        await asyncio.sleep(0)  # the loop turns between requests
    await limits.settle()  # the leases of the last first calls, counted in the figure
    spent = time.process_time() - started
    return (spent - await loop_turn_cost(n)) / n * 1e6


async def limiter_alone(args: argparse.Namespace) -> bool:
    """Prints the table; True if Redis answered."""
    print("1. the limiter alone: CPU per check (µs), the loop's own turn subtracted")
    print(f"   {'callers':>8}  {'in process':>10}  {'limits MemoryStorage':>20}  {'Redis':>8}")
    redis: Redis | None = Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        assert redis is not None
        await redis.ping()
    except Exception:
        print(f"   (no Redis at {REDIS_URL}: its column is skipped)")
        redis = None
    prefix = f"benchratelimits:{uuid.uuid4().hex[:8]}:"
    try:
        for callers in (10, 1_000, 100_000):
            local = await checks_cpu(RateLimits({Role.MEMBER: LIMIT}), callers, args.checks)
            library = RateLimits({Role.MEMBER: LIMIT})
            library.local = FixedWindowRateLimiter(MemoryStorage())
            # The library's storage scans every key each loop turn: fewer checks suffice.
            memory = await checks_cpu(library, callers, max(500, args.checks // 20))
            shared = "-"
            if redis is not None:
                limits = RateLimits(
                    {Role.MEMBER: LIMIT}, redis=redis, redis_url=REDIS_URL, prefix=prefix
                )
                shared = f"{await checks_cpu(limits, callers, max(1000, args.checks // 10)):.1f}"
            print(f"   {callers:>8,}  {local:>10.1f}  {memory:>20.1f}  {shared:>8}")
    finally:
        if redis is not None:
            keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
            for start in range(0, len(keys), 1000):
                await redis.delete(*keys[start : start + 1000])
            await redis.aclose()
    return redis is not None


async def app_cpu(client: httpx.AsyncClient, tokens: list[str], n: int, concurrency: int) -> float:
    """µs of CPU per request."""
    body = {"query": "{ __typename }"}

    async def worker(count: int) -> None:
        for _ in range(count):
            token = tokens[random.randrange(len(tokens))]
            response = await client.post(
                "/graphql", json=body, headers={"authorization": f"Bearer {token}"}
            )
            assert response.status_code == 200, response.text

    started = time.process_time()
    await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
    return (time.process_time() - started) / n * 1e6


async def app_on_off(args: argparse.Namespace, redis_up: bool) -> None:
    secret = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    tokens = [
        access.issue_member_token(
            subject=encode_id("Member", i + 1), secret=secret, now=now, ttl=timedelta(hours=1)
        )
        for i in range(1_000)
    ]
    prefix = f"benchratelimits:{uuid.uuid4().hex[:8]}:"
    configs: dict[str, dict[str, object]] = {
        "off": {"rate_limits": False},
        "on, in process": {},
    }
    if redis_up:
        configs["on, Redis"] = {"redis_url": REDIS_URL, "redis_prefix": prefix}
    results: dict[str, list[float]] = {name: [] for name in configs}
    with tempfile.TemporaryDirectory() as folder:
        clients = {}
        for name, overrides in configs.items():
            settings = Settings(
                env="production",
                database_url=f"sqlite+aiosqlite:///{folder}/laurel.db",
                jwt_secret=SecretStr(secret),
                sweep_interval_seconds=0,
                _env_file=None,  # type: ignore[call-arg]
                **overrides,  # type: ignore[arg-type]
            )
            app = create_app(settings)
            transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 1))
            clients[name] = httpx.AsyncClient(transport=transport, base_url="http://bench")
        for client in clients.values():  # warm-up
            await app_cpu(client, tokens, 500, args.concurrency)
        names = list(configs)
        for round_ in range(args.rounds):
            turn = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in turn:
                cpu = await app_cpu(clients[name], tokens, args.requests, args.concurrency)
                results[name].append(cpu)
        for client in clients.values():
            await client.aclose()
    if redis_up:
        redis = Redis.from_url(REDIS_URL)
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
        for start in range(0, len(keys), 1000):
            await redis.delete(*keys[start : start + 1000])
        await redis.aclose()
    off = statistics.median(results["off"])
    print("2. the app in process, `{ __typename }` as 1,000 members: CPU per request (µs)")
    for name, rounds in results.items():
        median = statistics.median(rounds)
        print(
            f"   limits {name:<15} {median:7.1f}  x{median / off:.3f} of off"
            f"   (rounds: {', '.join(f'{x:.1f}' for x in rounds)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    async def both() -> None:
        redis_up = await limiter_alone(args)
        await app_on_off(args, redis_up)

    asyncio.run(both())


if __name__ == "__main__":
    main()
