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
import os
import statistics
import uuid

from redis.asyncio import Redis

from api.tracing import Tracing
from bench.tracing import Configurations, EncodingExporter, arguments, compare

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
    prefix = f"benchinternet:{uuid.uuid4().hex[:8]}:"
    redis_up = await redis_answers()
    configs: Configurations = {
        "off": ({"rate_limits": False}, None),
        "limits": ({}, None),
    }
    if redis_up:
        configs["limits in Redis"] = ({"redis_url": REDIS_URL, "redis_prefix": prefix}, None)
    else:
        print(f"(no Redis at {REDIS_URL}: the `limits in Redis` row is skipped)")
    configs["limits + tracing"] = ({}, Tracing(EncodingExporter(), batch=True))
    try:
        results = await compare(configs, args)
    finally:
        if redis_up:
            await forget(prefix)
    for label, rounds in results.items():
        base = statistics.median(rounds["off"])
        print(f"{label}: CPU per request (median of {args.rounds} rounds), ratio to off")
        for name, figures in rounds.items():
            median = statistics.median(figures)
            shown = ", ".join(f"{x:.0f}" for x in figures)
            print(
                f"   {name:<18} {median:>7.0f} µs  {median / base:>5.2f}x"
                f"   (+{median - base:.0f} µs; rounds {shown})"
            )
        limits = statistics.median(rounds["limits"])
        traced = statistics.median(rounds["limits + tracing"])
        print(f"   tracing alone: {traced / limits:.2f}x of `limits`")


if __name__ == "__main__":
    asyncio.run(main(arguments(__doc__)))
