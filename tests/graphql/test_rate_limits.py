"""Rate limits over HTTP and WebSocket: per member token and API key, per address for
anonymous calls, per role; shared through Redis by every process; Redis failing costs nothing.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from limits import parse
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from api.app import create_app
from api.rate_limits import LocalCounters, RateLimits
from api.settings import Settings
from models import KeyRole
from models.engine import session_factory
from services import members
from services.clock import ManualClock
from tests.conftest import JWT_SECRET, Api
from tests.graphql.test_limits_and_errors import WebSocketSession
from tests.live.conftest import REDIS_URL

ME = "{ me { id } }"
TYPENAME = "{ __typename }"

AppMaker = Callable[..., Awaitable[Api]]


@pytest.fixture
async def limited_app(clock: ManualClock) -> AsyncIterator[AppMaker]:
    """Apps with the rate-limit settings a test gives (on the test database); their Redis keys
    (under the prefix given) are deleted afterwards."""
    apps: list[Starlette] = []
    prefixes: set[str] = set()

    async def make(
        engine: AsyncEngine, *, address: tuple[str, int] = ("10.0.0.1", 1000), **overrides: Any
    ) -> Api:
        settings = Settings(
            database_url=engine.url.render_as_string(hide_password=False),
            jwt_secret=SecretStr(JWT_SECRET),
            sweep_interval_seconds=0,
            _env_file=None,  # type: ignore[call-arg]
            **overrides,
        )
        if settings.redis_url == REDIS_URL:
            prefixes.add(settings.redis_prefix)
        app = create_app(settings, clock=clock)
        apps.append(app)
        transport = httpx.ASGITransport(app=app, client=address)
        client = httpx.AsyncClient(transport=transport, base_url="http://test")
        return Api(client=client, sessions=session_factory(engine), clock=clock, app=app)

    yield make
    for app in apps:
        await app.state.laurel.engine.dispose()
        await app.state.rate_limits.settle()  # the leases of calls served, sent (no lifespan)
        boards = app.state.laurel.runtime.leaderboards.store
        if boards is not None:  # the app's Redis client, whose pool the limits share
            await boards.redis.aclose(close_connection_pool=True)
    if prefixes:
        redis = Redis.from_url(REDIS_URL)
        for prefix in prefixes:
            keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
            if keys:
                await redis.delete(*keys)
        await redis.aclose()


def client_at(api: Api, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=api.app, client=(host, 4321))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def post(
    client: httpx.AsyncClient, query: str = ME, token: str | None = None
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return await client.post("/graphql", json={"query": query}, headers=headers)


def assert_served(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert "RATE_LIMITED" not in response.text


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert error["extensions"]["retryAfter"] == retry_after


async def member_token(api: Api, email: str = "ann@example.com") -> str:
    async with api.sessions.begin() as session:
        member = await members.enroll(session, email=email, display_name="Ann", now=api.clock.now())
    return api.member_token(member.id)


async def test_the_next_request_in_a_window_is_refused_by_every_process_sharing_redis(
    engine: AsyncEngine, limited_app: AppMaker
) -> None:
    shared = {
        "redis_url": REDIS_URL,
        "redis_prefix": f"laureltest:{uuid.uuid4().hex}:",
        "rate_limit_member": "3/2 seconds",
    }
    a = await limited_app(engine, **shared)
    b = await limited_app(engine, **shared)
    token = await member_token(a)

    # Given three calls, spread over two processes, within one 2-second window
    for api in (a, b, a):
        assert_served(await post(api.client, token=token))
    # then the fourth is refused, whichever process it reaches
    assert_refused(await post(b.client, token=token))
    assert_refused(await post(a.client, token=token))
    # and once the window is over, the member is served again
    await asyncio.sleep(2.1)
    assert_served(await post(b.client, token=token))


async def test_anonymous_calls_are_limited_by_client_address(
    engine: AsyncEngine, limited_app: AppMaker
) -> None:
    api = await limited_app(engine, rate_limit_anonymous="2/minute")
    first, second = client_at(api, "1.2.3.4"), client_at(api, "5.6.7.8")
    for _ in range(2):
        assert_served(await post(first, TYPENAME))
    assert_refused(await post(first, TYPENAME))
    # Another address has its own count
    assert_served(await post(second, TYPENAME))
    # A refused credential is anonymous too: it does not escape its address's count
    assert_refused(await post(first, TYPENAME, token="lk_not-a-real-key"))
    # Under application/graphql-response+json too: 429, and no `data` (the request never ran)
    response = await first.post(
        "/graphql",
        json={"query": TYPENAME},
        headers={"accept": "application/graphql-response+json"},
    )
    assert_refused(response)
    assert response.headers["content-type"].startswith("application/graphql-response+json")
    assert "data" not in response.json()


async def test_limits_are_set_per_role(engine: AsyncEngine, limited_app: AppMaker) -> None:
    # Given members limited to 2 calls a minute and service keys left unlimited (the default)
    api = await limited_app(engine, rate_limit_member="2/minute")
    ann = await member_token(api)
    bob = await member_token(api, "bob@example.com")
    service = await api.key(KeyRole.SERVICE)
    for _ in range(2):
        assert_served(await post(api.client, token=ann))
    assert_refused(await post(api.client, token=ann))
    # then another member has a count of its own
    assert_served(await post(api.client, token=bob))
    metrics = (await api.client.get("/metrics")).text
    assert 'laurel_rate_limited_total{role="member"} 1.0' in metrics
    # and a service key is never limited
    for _ in range(20):
        assert_served(await post(api.client, TYPENAME, token=service))


async def test_limits_can_be_turned_off(engine: AsyncEngine, limited_app: AppMaker) -> None:
    api = await limited_app(
        engine, rate_limits=False, rate_limit_member="1/minute", rate_limit_anonymous="1/minute"
    )
    token = await member_token(api)
    for _ in range(5):
        assert_served(await post(api.client, token=token))
        assert_served(await post(api.client, TYPENAME))


async def connect(api: Api, token: str) -> WebSocketSession:
    socket = WebSocketSession(api.app, ["graphql-transport-ws"])
    await socket.__aenter__()
    assert (await socket.event())["type"] == "websocket.accept"
    await socket.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    return socket


async def test_websocket_connection_attempts_are_counted(
    engine: AsyncEngine, limited_app: AppMaker
) -> None:
    api = await limited_app(engine, rate_limit_member="2/minute")
    token = await member_token(api)
    sockets = [await connect(api, token) for _ in range(3)]
    try:
        for accepted in sockets[:2]:
            assert (await accepted.receive())["type"] == "connection_ack"
        closed = await sockets[2].event()
        assert closed["type"] == "websocket.close"
        assert closed["code"] == 4429
        assert "retry in" in closed["reason"]
        # The same credential over HTTP shares the count
        assert_refused(await post(api.client, token=token))
    finally:
        for session in sockets:
            await session.__aexit__()


async def test_websocket_operations_are_counted(engine: AsyncEngine, limited_app: AppMaker) -> None:
    # Given 3 calls a minute: the connection is the first, two operations the next two
    api = await limited_app(engine, rate_limit_member="3/minute")
    token = await member_token(api)
    socket = await connect(api, token)
    try:
        assert (await socket.receive())["type"] == "connection_ack"
        for n in range(2):
            await socket.send({"id": str(n), "type": "subscribe", "payload": {"query": ME}})
            assert (await socket.receive())["type"] == "next"
            assert (await socket.receive())["type"] == "complete"
        # then the next operation is refused, and the connection stays open
        await socket.send({"id": "2", "type": "subscribe", "payload": {"query": ME}})
        refused = await socket.receive()
        assert refused["type"] == "error" and refused["id"] == "2"
        assert refused["payload"][0]["extensions"]["code"] == "RATE_LIMITED"
        await socket.send({"type": "ping"})
        assert (await socket.receive())["type"] == "pong"
    finally:
        await socket.__aexit__()


async def test_requests_are_served_quickly_when_redis_is_unreachable(
    engine: AsyncEngine, limited_app: AppMaker
) -> None:
    api = await limited_app(engine, redis_url="redis://127.0.0.1:1/0", rate_limit_member="3/minute")
    token = await member_token(api)
    started = time.monotonic()
    for _ in range(3):
        assert_served(await post(api.client, token=token))
    assert time.monotonic() - started < 1.0
    # Meanwhile this process still counts on its own
    assert api.app.state.rate_limits.redis_skipped
    assert_refused(await post(api.client, token=token))


async def test_a_frozen_redis_costs_one_short_timeout_then_the_breaker_skips_it() -> None:
    # A listener that accepts connections and never answers: Redis stopped with SIGSTOP.
    frozen = socket.socket()
    frozen.bind(("127.0.0.1", 0))
    frozen.listen(16)
    port = frozen.getsockname()[1]
    redis = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=5)
    limits = RateLimits(
        {}, redis=redis, redis_url=f"redis://127.0.0.1:{port}/0", timeout=0.2, breaker_seconds=1
    )
    limit = parse("5/minute")
    try:
        started = time.monotonic()
        assert await limits.hit(limit, "member:1") is None  # a first call is served at once
        assert time.monotonic() - started < 0.05
        started = time.monotonic()
        assert await limits.hit(limit, "member:1") is None  # waits for the lease: fail open
        assert 0.15 < time.monotonic() - started < 1.0
        started = time.monotonic()
        for _ in range(3):
            assert await limits.hit(limit, "member:1") is None
        assert time.monotonic() - started < 0.05  # no more waits on Redis
        assert limits.redis_skipped
        # Still limited, in this process: the first call was counted here too
        refusal = await limits.hit(limit, "member:1")
        assert refusal is not None and refusal.retry_after >= 1

        # Once the breaker's second is up, one call tries Redis again; the others do not wait
        await asyncio.sleep(1.05)

        async def timed_hit(n: int) -> float:
            started = time.monotonic()
            await limits.hit(limit, f"member:{n}")
            return time.monotonic() - started

        waits = sorted(await asyncio.gather(*(timed_hit(n) for n in range(2, 7))))
        assert waits[-1] > 0.15  # the one that tried
        assert waits[-2] < 0.05
        assert limits.redis_skipped
    finally:
        await redis.aclose(close_connection_pool=True)
        frozen.close()


async def test_local_counters_keep_a_bounded_number_of_windows() -> None:
    counters = LocalCounters(max_keys=100)
    for n in range(1_000):
        assert await counters.incr(f"address:{n}", 60) == 1
    assert len(counters._windows) <= 100
    # the newest windows are kept, the oldest went
    assert await counters.get("address:999") == 1
    assert await counters.get("address:0") == 0


async def test_local_counters_drop_ended_windows_as_new_ones_start() -> None:
    counters = LocalCounters(max_keys=1_000)
    for n in range(10):
        await counters.incr(f"short:{n}", 0)  # ended at once
    await counters.incr("minute:1", 60)
    await counters.incr("minute:1", 60)  # a window that goes on keeps its count

    assert list(counters._windows) == ["minute:1"]
    assert await counters.get("minute:1") == 2


async def test_first_calls_are_served_at_once_share_one_round_trip_and_stay_exact() -> None:
    prefix = f"laureltest:{uuid.uuid4().hex[:12]}:"
    redis = Redis.from_url(REDIS_URL)
    limits = RateLimits({}, redis=redis, redis_url=REDIS_URL, prefix=prefix)
    limit = parse("3/minute")  # a lease of one call: every call asks Redis
    script_calls: list[int] = []
    leases_of = limits._leases_of
    sent = asyncio.Event()

    async def counted(keys: list[str], args: list[int]) -> list[Any]:
        script_calls.append(len(keys))
        try:
            return await leases_of(keys, args)
        finally:
            sent.set()

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(limits, "_leases_of", counted)
            # 40 callers' first calls at once: served without waiting for Redis
            first = await asyncio.gather(*(limits.hit(limit, f"member:{n}") for n in range(40)))
            assert first == [None] * 40
            # and counted a few milliseconds later (FLUSH_SECONDS), their leases in one script
            # call, sent by the timer alone
            await asyncio.wait_for(sent.wait(), timeout=5)
            assert script_calls == [40]
            counts = await redis.mget(
                [f"{prefix}ratelimit/{limit.key_for(f'member:{n}')}" for n in range(40)]
            )
            assert counts == [b"1"] * 40
            # Each caller's next calls, all at once: three served in all, the fourth refused
            # (a caller's calls waiting on one lease take turns, nothing is counted twice).
            more = await asyncio.gather(
                *(limits.hit(limit, f"member:{n}") for n in range(40) for _ in range(3))
            )
        served = [sum(verdict is None for verdict in more[n * 3 : n * 3 + 3]) for n in range(40)]
        assert served == [2] * 40
    finally:
        await redis.aclose(close_connection_pool=True)


async def test_a_first_call_over_a_limit_other_processes_used_up_is_the_only_one_served() -> None:
    prefix = f"laureltest:{uuid.uuid4().hex[:12]}:"
    clients = [Redis.from_url(REDIS_URL) for _ in range(2)]
    a, b = (RateLimits({}, redis=c, redis_url=REDIS_URL, prefix=prefix) for c in clients)
    limit = parse("5/minute")
    try:
        served_by_a = [await a.hit(limit, "member:1") is None for _ in range(7)]
        assert served_by_a == [True] * 5 + [False] * 2
        # b has not seen the caller: its first call is served before its lease says the window
        # is full, and counted; every later call is refused
        assert await b.hit(limit, "member:1") is None
        later = [await b.hit(limit, "member:1") for _ in range(3)]
        assert all(refusal is not None and refusal.retry_after >= 1 for refusal in later)
        raw = await clients[0].get(f"{prefix}ratelimit/{limit.key_for('member:1')}")
        assert raw is not None and int(raw) >= 6  # every call served is counted
    finally:
        keys = [key async for key in clients[0].scan_iter(match=f"{prefix}*")]
        if keys:
            await clients[0].delete(*keys)
        for client in clients:
            await client.aclose()


async def test_many_calls_of_one_caller_at_once_are_counted_exactly() -> None:
    # A caller's calls waiting on one lease all resume together, most finding its units
    # taken: they ask again (no call may spin on a lease already answered) and none is lost.
    prefix = f"laureltest:{uuid.uuid4().hex[:12]}:"
    redis = Redis.from_url(REDIS_URL)
    limits = RateLimits({}, redis=redis, redis_url=REDIS_URL, prefix=prefix)
    limit = parse("100/minute")  # leases of 10
    try:
        verdicts = await asyncio.gather(*(limits.hit(limit, f"member:{n % 3}") for n in range(900)))
        for caller in range(3):
            mine = verdicts[caller::3]
            assert sum(v is None for v in mine) == 100
            assert all(v is None or v.retry_after >= 1 for v in mine)
    finally:
        await redis.aclose(close_connection_pool=True)


async def test_leases_never_let_two_processes_past_the_limit_and_lose_little() -> None:
    # 40 a minute: each process leases 4 calls per round trip.
    prefix = f"laureltest:{uuid.uuid4().hex[:12]}:"
    clients = [Redis.from_url(REDIS_URL) for _ in range(2)]
    processes = [
        RateLimits({}, redis=client, redis_url=REDIS_URL, prefix=prefix) for client in clients
    ]
    limit = parse("40/minute")
    try:
        served = [0, 0]
        for turn in range(100):  # the two processes take turns, as a balancer spreads calls
            who = turn % 2
            if await processes[who].hit(limit, "member:7") is None:
                served[who] += 1
        assert served[0] > 0 and served[1] > 0
        # Never more than the limit; at most one lease's unused rest lost per process.
        assert 40 - 2 * 3 <= sum(served) <= 40, served
        raw = await clients[0].get(f"{prefix}ratelimit/{limit.key_for('member:7')}")
        assert raw is not None
        counted = int(raw)
        assert counted >= sum(served)  # Redis counted every call served, and the lost units
    finally:
        for client in clients:
            keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()
