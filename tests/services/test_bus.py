"""The bus between processes, over a real Redis: hints reach other processes' subscribers, and
Redis being down never reaches the committing code."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from services.bus import LocalBus, RedisBus

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def channel() -> str:
    return f"laureltest:{uuid.uuid4().hex}"


@pytest.fixture
async def two_processes(channel: str) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    clients = [Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)]
    buses = [RedisBus(client, channel=channel) for client in clients]
    for bus in buses:
        await bus.start()
    for bus in buses:
        await asyncio.wait_for(bus.connected.wait(), timeout=5)
    yield buses[0], buses[1]
    for bus in buses:
        await bus.stop()
    for client in clients:
        await client.aclose()


async def test_a_commit_in_one_process_rings_subscribers_in_another(
    two_processes: tuple[RedisBus, RedisBus],
) -> None:
    a, b = two_processes
    ann_on_b, bob_on_b = b.subscribe(1), b.subscribe(2)
    everything_on_b = b.subscribe(None)

    a.committed(frozenset({1}))

    await asyncio.wait_for(ann_on_b.wait(), timeout=5)
    await asyncio.wait_for(everything_on_b.wait(), timeout=5)
    assert not bob_on_b.rung  # another member's subscriber hears nothing


async def test_commits_ring_local_subscribers_and_listeners_at_once() -> None:
    bus = LocalBus()
    bell = bus.subscribe(7)
    seen: list[frozenset[int]] = []
    bus.on_commit(seen.append)
    bus.committed(frozenset({7, 8}))
    await asyncio.wait_for(bell.wait(), timeout=1)
    assert seen == [frozenset({7, 8})]
    bus.unsubscribe(7, bell)
    assert bus.subscribers == 0


async def test_redis_down_never_reaches_the_committer_and_hints_go_out_when_it_is_back(
    channel: str,
) -> None:
    # given a process whose Redis is unreachable
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    down = RedisBus(dead, channel=channel)
    await down.start()
    local = down.subscribe(3)

    # a commit still rings local subscribers, and raises nothing
    down.committed(frozenset({3}))
    await asyncio.wait_for(local.wait(), timeout=1)
    await asyncio.sleep(0.5)  # the publisher tries, fails, and keeps the hint

    # when Redis is reachable again, the kept hints are published
    live_client = Redis.from_url(REDIS_URL)
    other = RedisBus(Redis.from_url(REDIS_URL), channel=channel)
    await other.start()
    await asyncio.wait_for(other.connected.wait(), timeout=5)
    remote = other.subscribe(3)
    down._redis = live_client  # the same process, its Redis back
    await asyncio.wait_for(remote.wait(), timeout=10)
    assert not down._unsent
    for bus in (down, other):
        await bus.stop()
    await live_client.aclose()
    await dead.aclose()


async def test_stopping_right_after_a_commit_finishes_promptly(channel: str) -> None:
    """A hint committed just before shutdown: stop publishes it (best effort) and returns,
    however the publisher task is caught when it is cancelled."""
    for _ in range(20):
        bus = RedisBus(Redis.from_url(REDIS_URL), channel=channel)
        await bus.start()
        bus.committed(frozenset({1, 2, 3}))
        await asyncio.wait_for(bus.stop(), timeout=5)
        await bus.listener.aclose()


async def test_a_doorbell_coalesces_rings_and_survives_a_cancelled_wait() -> None:
    bell = LocalBus().subscribe(1)
    bell.ring()
    bell.ring()
    await asyncio.wait_for(bell.wait(), timeout=1)  # rung before: at once, and only once
    assert not bell.rung
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(bell.wait(), timeout=0.05)
    waiting = asyncio.create_task(bell.wait())
    await asyncio.sleep(0)
    bell.ring()
    await asyncio.wait_for(waiting, timeout=1)  # a ring after a cancelled wait still wakes


async def test_every_subscriber_of_a_member_is_rung_as_they_come_and_go() -> None:
    bus = LocalBus()
    first, second, third = bus.subscribe(5), bus.subscribe(5), bus.subscribe(5)
    assert bus.subscribers == 3
    bus.ring([5])
    assert first.rung and second.rung and third.rung
    for bell in (first, second, third):
        await bell.wait()
    bus.unsubscribe(5, second)
    bus.unsubscribe(5, first)
    bus.ring_everyone()
    assert third.rung and not first.rung and not second.rung
    bus.unsubscribe(5, third)
    bus.unsubscribe(5, third)  # twice: nothing
    assert bus.subscribers == 0
    lone = bus.subscribe(5)
    bus.ring([5, 6])
    assert lone.rung
