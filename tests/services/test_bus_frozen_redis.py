"""Broadcasts with Redis frozen (SIGSTOP), not gone: the request that broadcasts waits one
short deadline, then none while the breaker is open; the messages are kept and reach the
other processes once Redis answers again. A redis-server of this test's own (the shared one
is never stopped)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from services.bus import BROADCAST_TIMEOUT, RedisBus
from services.leaderboards import connect_redis
from tests.live.conftest import free_port
from tests.live.test_redis_outage import REDIS_SERVER, PrivateRedis

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="needs the redis-server binary")


async def timed_broadcast(bus: RedisBus, message: str) -> float:
    started = time.monotonic()
    await bus.broadcast(message)
    return time.monotonic() - started


async def until(condition: object, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not (condition() if callable(condition) else condition):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_a_frozen_redis_costs_one_short_wait_and_kept_broadcasts_arrive_when_it_is_back() -> (
    None
):
    private = PrivateRedis(free_port()).start()
    assert private.process is not None
    channel = f"laureltest:{uuid4().hex}:member-events"
    # As the app builds them: a short-timeout client publishes, a quiet one listens.
    clients = [connect_redis(private.url) for _ in range(2)]
    listeners = [Redis.from_url(private.url, socket_connect_timeout=1.0) for _ in range(2)]
    sender, receiver = (
        RedisBus(client, listener=listener, channel=channel)
        for client, listener in zip(clients, listeners, strict=True)
    )
    here: list[str] = []
    there: list[str] = []
    sender.on_broadcast(here.append)
    receiver.on_broadcast(there.append)
    try:
        for bus in (sender, receiver):
            await bus.start()
            await asyncio.wait_for(bus.connected.wait(), timeout=5)
        await sender.broadcast("keys")
        await until(lambda: "keys" in there, 5, "the healthy broadcast did not arrive")

        os.kill(private.process.pid, signal.SIGSTOP)
        # The first broadcast waits one deadline (not the client's 0.5 s timeout and retry)
        assert await timed_broadcast(sender, "erased:1") < BROADCAST_TIMEOUT + 0.15
        assert sender.breaker.open
        # then the breaker is open: no wait at all
        for n in range(2, 7):
            assert await timed_broadcast(sender, f"erased:{n}") < 0.02
        # This process was told at once, every time
        assert here == ["keys", *(f"erased:{n}" for n in range(1, 7))]
        assert not any(m.startswith("erased:") for m in there)

        os.kill(private.process.pid, signal.SIGCONT)
        wanted = {f"erased:{n}" for n in range(1, 7)}
        await until(lambda: wanted <= set(there), 15, f"kept broadcasts lost: {there}")
        # Published: the breaker is closed again, and broadcasts go straight through
        await until(lambda: not sender.breaker.failing, 5, "the breaker stayed open")
        assert await timed_broadcast(sender, "erased:7") < 0.1
        await until(lambda: "erased:7" in there, 5, "a broadcast after the outage was lost")
    finally:
        if private.process is not None:
            os.kill(private.process.pid, signal.SIGCONT)
        for bus in (sender, receiver):
            await bus.stop()
        for client in (*clients, *listeners):
            await client.aclose()
        private.kill()
