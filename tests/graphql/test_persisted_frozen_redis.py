"""Persisted queries with Redis frozen (SIGSTOP): a lookup or registration that waits for it
costs one timeout, then the store does without Redis (a miss, or this process's copy) at once
while its breaker is open; one call probes it again later; after SIGCONT it is used again. A
redis-server of this test's own (the shared one is never stopped)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable
from uuid import uuid4

import pytest

from api.persisted import MemoryApqStore, RedisApqStore
from services.leaderboards import connect_redis
from services.trusted_documents import document_hash
from tests.live.conftest import free_port
from tests.live.test_redis_outage import REDIS_SERVER, PrivateRedis

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="needs the redis-server binary")

TIMEOUT = 0.3  # the client's socket timeout (one retry: two of them at most)
RETRY = 1.0


def documents(count: int) -> list[tuple[str, str]]:
    texts = [f"{{ program {{ name }} }} # {n} {uuid4().hex}" for n in range(count)]
    return [(document_hash(text), text) for text in texts]


async def timed(call: Awaitable[object]) -> float:
    started = time.monotonic()
    await call
    return time.monotonic() - started


async def test_a_frozen_redis_costs_one_timeout_then_the_store_does_without_it() -> None:
    private = PrivateRedis(free_port()).start()
    assert private.process is not None
    redis = connect_redis(private.url, timeout=TIMEOUT)
    prefix = f"laureltest:{uuid4().hex}:"
    writer = RedisApqStore(redis, prefix=prefix, ttl_seconds=60, retry_seconds=RETRY)
    reader = RedisApqStore(  # another process: knows only what Redis holds
        redis, prefix=prefix, ttl_seconds=60, local=MemoryApqStore(), retry_seconds=RETRY
    )
    try:
        (shared_hash, shared), *rest = documents(12)
        await writer.put(shared_hash, shared)
        assert await reader.get(shared_hash) == shared  # through Redis

        os.kill(private.process.pid, signal.SIGSTOP)
        (first_hash, first_text), *others = rest
        assert await timed(writer.put(first_hash, first_text)) < 2 * TIMEOUT + 0.4
        assert await writer.get(first_hash) == first_text  # this process's copy
        for sha, text in others:
            assert await timed(writer.put(sha, text)) < 0.05
            assert await timed(writer.get(sha)) < 0.05
        # Redis is the other store's only source: one timeout, then misses at once.
        assert await timed(reader.get(first_hash)) < 2 * TIMEOUT + 0.4
        for sha, _ in others:
            started = time.monotonic()
            assert await reader.get(sha) is None
            assert time.monotonic() - started < 0.05

        # Time to try again: one call probes (and waits), the others go on without Redis.
        await asyncio.sleep(RETRY)
        probe = asyncio.create_task(reader.get(first_hash))
        await asyncio.sleep(0.02)
        for sha, _ in others:
            assert await timed(reader.get(sha)) < 0.05
        assert await probe is None

        os.kill(private.process.pid, signal.SIGCONT)
        await asyncio.sleep(RETRY)
        assert await reader.get(shared_hash) == shared  # Redis again
        sha, text = others[0]
        await writer.put(sha, text)
        assert await reader.get(sha) == text
    finally:
        if private.process is not None:
            os.kill(private.process.pid, signal.SIGCONT)
        await redis.aclose()
        private.kill()
