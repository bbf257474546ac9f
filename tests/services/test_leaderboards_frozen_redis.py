"""Redis frozen (SIGSTOP), not gone: the connection stays open and nothing answers. A
leaderboard read costs one timeout, then reads go to the database at once while the breaker
is open; once it may try again, one read probes Redis while the others keep going to the
database; after SIGCONT the boards come from Redis again. A redis-server of this test's own
(the shared one is never stopped)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from uuid import uuid4

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from models.engine import read_session_factory, session_factory
from services.clock import ManualClock
from services.leaderboards import Leaderboards, LeaderboardStore, Period, connect_redis
from services.leaderboards.store import encode_member
from services.ledger.purchases import record_purchase
from tests.live.conftest import free_port
from tests.live.test_redis_outage import REDIS_SERVER, PrivateRedis
from tests.services.helpers import new_member

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="needs the redis-server binary")

TIMEOUT = 0.3  # the client's socket timeout (one retry: two of them at most)
RETRY = 1.0  # how long the breaker stays open


async def timed_top(boards: Leaderboards) -> tuple[float, int]:
    started = time.monotonic()
    board = await boards.board(Period.ALL_TIME, first=10, member_id=None)
    return time.monotonic() - started, board.entries[0].points


async def test_a_frozen_redis_costs_one_timeout_then_the_database_answers_at_once(
    pg: AsyncEngine, clock: ManualClock
) -> None:
    sessions = session_factory(pg)
    member = await new_member(sessions, clock)
    async with sessions.begin() as session:
        await record_purchase(
            session, member_id=member, order_id="o-1", amount=50, now=clock.now(), actor="test"
        )
    private = PrivateRedis(free_port()).start()
    assert private.process is not None
    redis = connect_redis(private.url, timeout=TIMEOUT)
    store = LeaderboardStore(redis, prefix=f"laureltest:{uuid4().hex}:")
    boards = Leaderboards(read_session_factory(pg), store, clock, retry_seconds=RETRY)
    try:
        assert (await timed_top(boards))[1] == 50  # built in Redis
        # A score only Redis has tells which one answered.
        await redis.zincrby(f"{store.prefix}lb:board:ALL_TIME", 1000, encode_member(member))
        assert (await timed_top(boards))[1] == 1050

        os.kill(private.process.pid, signal.SIGSTOP)
        waited, top = await timed_top(boards)
        assert waited < 2 * TIMEOUT + 0.4 and top == 50  # one timeout, then the database
        for _ in range(20):
            waited, top = await timed_top(boards)
            assert waited < 0.1 and top == 50

        # The breaker may try again: one read probes (and waits), the others do not.
        await asyncio.sleep(RETRY)
        probe = asyncio.create_task(timed_top(boards))
        await asyncio.sleep(0.02)
        for _ in range(10):
            waited, top = await timed_top(boards)
            assert waited < 0.1 and top == 50
        assert (await probe)[1] == 50

        os.kill(private.process.pid, signal.SIGCONT)
        await asyncio.sleep(RETRY)
        deadline = time.monotonic() + 5
        while (await timed_top(boards))[1] != 1050:  # Redis again
            assert time.monotonic() < deadline, "the boards did not come back to Redis"
            await asyncio.sleep(0.1)
    finally:
        if private.process is not None:
            os.kill(private.process.pid, signal.SIGCONT)
        await redis.aclose()
        private.kill()
