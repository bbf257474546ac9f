"""What the open-internet features cost, as ratios in one run: rate limiting and tracing off
and on, on the same app, the same requests and the same machine moment.

    .venv/bin/python -m bench.internet [--members 50 --requests 2000 --rounds 3]

The whole app in process (`create_app`, production settings, an SQLite file migrated here;
no sockets), the JSON log handler of `laurel serve` at INFO writing to /dev/null, members
enrolled through the API, then `Dashboard` (the bench's read) and `{ __typename }` (the
cheapest authenticated request: the fixed costs' share as large as it gets), as random
members with their tokens, in each configuration:

* `off`: rate limits and tracing off;
* `limits`: rate limits on, the defaults, counted in process (no Redis);
* `limits in Redis`: the same counted in Redis (BENCH_REDIS_URL, default
  redis://127.0.0.1:6379/0, a key prefix of its own, deleted afterwards), when one answers;
* `limits + tracing`: rate limits in process and tracing on as in production (as in
  `bench.tracing`: batch span processor, spans encoded as OTLP/HTTP would and dropped). One
  traced app a process (the SQLAlchemy instrumentation is process-wide), so tracing's own
  share is this row over `limits`.

Configurations alternate, round after round; medians of CPU per request (every thread of
the process), each as a ratio to `off`. For the limiter alone (per-check µs, 10 to 100,000
callers) see `bench.rate_limits`; for tracing without the access log, `bench.tracing`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import tempfile
import uuid
from typing import Any

import httpx
from pydantic import SecretStr
from redis.asyncio import Redis

from api.app import create_app
from api.database import prepare_database
from api.logs import json_handler
from api.settings import Settings
from api.tracing import Tracing
from bench.tracing import ENROLL, SECRET, EncodingExporter, cpu_per_request
from bench.workloads import DASHBOARD_QUERY
from models import KeyRole
from models.engine import create_engine, session_factory
from services import access
from services.clock import SystemClock
from services.program import ensure_program

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


async def redis_answers() -> bool:
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(await client.ping())
    except Exception:  # any failure: the Redis row is skipped
        return False
    finally:
        await client.aclose()


async def forget(prefix: str) -> None:
    redis = Redis.from_url(REDIS_URL)
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
    for start in range(0, len(keys), 1000):
        await redis.delete(*keys[start : start + 1000])
    await redis.aclose()


async def main(args: argparse.Namespace) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        os.environ.pop(name, None)  # each configuration says for itself
    laurel = logging.getLogger("laurel")
    prefix = f"benchinternet:{uuid.uuid4().hex[:8]}:"
    redis_up = await redis_answers()
    # (Opening /dev/null blocks nobody.)
    with open(os.devnull, "w") as devnull, tempfile.TemporaryDirectory() as folder:  # noqa: ASYNC230
        handler = json_handler(devnull)
        laurel.addHandler(handler)
        laurel.setLevel(logging.INFO)
        url = f"sqlite+aiosqlite:///{folder}/laurel.db"
        engine = create_engine(url)
        await prepare_database(engine)
        async with session_factory(engine).begin() as session:
            await ensure_program(session)
            admin = await access.create_api_key(
                session, role=KeyRole.ADMIN, name="bench", now=SystemClock().now()
            )
        await engine.dispose()

        encoded = EncodingExporter()
        configs: dict[str, tuple[dict[str, Any], Tracing | None]] = {
            "off": ({"rate_limits": False}, None),
            "limits": ({}, None),
        }
        if redis_up:
            configs["limits in Redis"] = ({"redis_url": REDIS_URL, "redis_prefix": prefix}, None)
        configs["limits + tracing"] = ({}, Tracing(encoded, batch=True))
        clients: dict[str, httpx.AsyncClient] = {}
        apps = []
        lifespans = contextlib.AsyncExitStack()
        for name, (overrides, tracing) in configs.items():
            settings = Settings(
                env="production",
                database_url=url,
                jwt_secret=SecretStr(SECRET),
                sweep_interval_seconds=0,
                webhooks_in_process=False,
                _env_file=None,  # type: ignore[call-arg]
                **overrides,
            )
            app = create_app(settings, tracing=tracing)
            apps.append(app)
            # Started as served (the bus subscribed, caches on): with Redis configured the
            # member views cache only while the bus listens.
            await lifespans.enter_async_context(app.router.lifespan_context(app))
            clients[name] = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench"
            )
        first = clients["off"]
        tokens = []
        for i in range(args.members):
            enrolled = await first.post(
                "/graphql",
                json={
                    "query": ENROLL,
                    "variables": {"input": {"email": f"b{i}@example.com", "displayName": f"B{i}"}},
                },
                headers={"authorization": f"Bearer {admin.secret}"},
            )
            tokens.append(enrolled.json()["data"]["enroll"]["token"])

        if not redis_up:
            print(f"(no Redis at {REDIS_URL}: the `limits in Redis` row is skipped)")
        bodies = {
            "Dashboard": {"query": DASHBOARD_QUERY},
            "{ __typename }": {"query": "{ __typename }"},
        }
        try:
            for label, body in bodies.items():
                results: dict[str, list[float]] = {name: [] for name in configs}
                for client in clients.values():  # warm-up: plans, caches, connections
                    await cpu_per_request(client, body, tokens, 200)
                names = list(configs)
                for round_ in range(args.rounds):
                    for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                        results[name].append(
                            await cpu_per_request(clients[name], body, tokens, args.requests)
                        )
                base = statistics.median(results["off"])
                print(f"{label}: CPU per request (median of {args.rounds} rounds), ratio to off")
                for name, figures in results.items():
                    median = statistics.median(figures)
                    rounds = ", ".join(f"{x:.0f}" for x in figures)
                    print(
                        f"   {name:<18} {median:>7.0f} µs  {median / base:>5.2f}x"
                        f"   (+{median - base:.0f} µs; rounds {rounds})"
                    )
                limits = statistics.median(results["limits"])
                traced = statistics.median(results["limits + tracing"])
                print(f"   tracing alone: {traced / limits:.2f}x of `limits`")
        finally:
            for client in clients.values():
                await client.aclose()
            await lifespans.aclose()  # engines disposed, tracing closed
            laurel.removeHandler(handler)
            if redis_up:
                await forget(prefix)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
