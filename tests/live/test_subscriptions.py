"""Live updates end to end: two `laurel serve` processes sharing PostgreSQL and Redis, a real
WebSocket, and a real GraphQL client library (gql, speaking graphql-transport-ws)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportClosed
from gql.transport.websockets import WebsocketsTransport
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, NegotiationError

from models import KeyRole
from models.engine import session_factory
from schema.ids import encode_id
from services import access, members
from tests.conftest import JWT_SECRET
from tests.live.conftest import Server, free_port, record_purchase, running, server_env

POINTS = gql(
    "subscription { pointsUpdated { transaction { reference points } balance { available } } }"
)
EVENTS = gql(
    """subscription($after: String) { memberEvents(after: $after) { cursor payload {
        __typename ... on PointsUpdate { transaction { reference points } balance { available } }
        ... on TierChanged { from { name } to { name } } } } }"""
)


@dataclass
class World:
    service_key: str
    ann: int
    ann_token: str
    bob: int
    bob_token: str


@pytest.fixture
async def world(pg: AsyncEngine) -> World:
    now = datetime.now(UTC)  # the servers run on the real clock
    sessions = session_factory(pg)
    async with sessions.begin() as session:
        key = await access.create_api_key(session, role=KeyRole.SERVICE, name="shop", now=now)
        ann = await members.enroll(session, email="ann@example.com", display_name="Ann", now=now)
        bob = await members.enroll(session, email="bob@example.com", display_name="Bob", now=now)

    def token(member_id: int, ttl: timedelta = timedelta(hours=1)) -> str:
        subject = encode_id("Member", member_id)
        return access.issue_member_token(subject=subject, secret=JWT_SECRET, now=now, ttl=ttl)

    return World(key.secret, ann.id, token(ann.id), bob.id, token(bob.id))


def transport(server: Server, token: str | None, **options: Any) -> WebsocketsTransport:
    return WebsocketsTransport(
        url=server.ws,
        init_payload={"authorization": f"Bearer {token}"} if token else {},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        **options,
    )


async def purchase(server: Server, world: World, member_id: int, order_id: str) -> None:
    await record_purchase(server, world.service_key, member_id, order_id)


@contextlib.asynccontextmanager
async def listening(
    server: Server, token: str, document: Any, variables: dict[str, Any] | None = None
) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    """Results of a subscription as they come, in a queue, while the block runs."""
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def run() -> None:
        async with Client(transport=transport(server, token)) as session:
            request = GraphQLRequest(document, variable_values=variables)
            async for result in session.subscribe(request):
                received.put_nowait(result)

    async with running(run(), TransportClosed):
        yield received


async def next_result(queue: asyncio.Queue[dict[str, Any]], within: float = 10) -> dict[str, Any]:
    return await asyncio.wait_for(queue.get(), timeout=within)


async def until_live(
    server: Server, world: World, member_id: int, queue: asyncio.Queue[dict[str, Any]]
) -> tuple[set[str], dict[str, Any]]:
    """Probe purchases until one comes back: from then on the subscription is certainly
    registered. Returns the probes' references (whichever of them are delivered later) and
    the first result."""
    probes: set[str] = set()
    for n in range(50):
        reference = f"probe-{uuid.uuid4().hex[:8]}-{n}"
        probes.add(reference)
        await purchase(server, world, member_id, reference)
        try:
            return probes, await next_result(queue, within=0.3)
        except TimeoutError:
            continue
    raise AssertionError("the subscription never went live")


def reference_of(result: dict[str, Any]) -> str:
    update = result.get("pointsUpdated") or result["memberEvents"]["payload"]
    return str(update["transaction"]["reference"])


async def test_a_purchase_on_one_process_reaches_a_subscriber_on_another_in_order_once(
    two_servers: tuple[Server, Server], world: World
) -> None:
    a, b = two_servers
    async with listening(a, world.ann_token, POINTS) as updates:
        probes, _ = await until_live(b, world, world.ann, updates)
        orders = [f"order-{n}" for n in range(10)]
        for order in orders:
            await purchase(b, world, world.ann, order)
        seen = [reference_of(await next_result(updates)) for _ in orders]
        # probes that came late are skipped; after them, every order once, in commit order
        seen = [r for r in seen if r not in probes]
        while len(seen) < len(orders):
            reference = reference_of(await next_result(updates))
            if reference not in probes:
                seen.append(reference)
        assert seen == orders
        with pytest.raises(TimeoutError):  # and nothing twice
            await next_result(updates, within=0.5)


async def test_reconnecting_with_after_replays_what_was_missed_then_goes_live(
    two_servers: tuple[Server, Server], world: World
) -> None:
    a, b = two_servers
    # given a subscriber that saw some purchases, then went away
    await purchase(b, world, world.ann, "before")
    async with listening(a, world.ann_token, EVENTS, {"after": None}) as events:
        _, last = await until_live(b, world, world.ann, events)
        with contextlib.suppress(TimeoutError):
            while True:  # the last event it saw
                last = await next_result(events, within=0.5)
    cursor = last["memberEvents"]["cursor"]

    # when three purchases are recorded meanwhile, and it comes back with `after`
    missed = ["missed-1", "missed-2", "missed-3"]
    for order in missed:
        await purchase(b, world, world.ann, order)
    async with listening(a, world.ann_token, EVENTS, {"after": cursor}) as events:
        replayed = [reference_of(await next_result(events)) for _ in missed]
        await purchase(b, world, world.ann, "live-1")
        live = reference_of(await next_result(events))
        with pytest.raises(TimeoutError):
            await next_result(events, within=0.5)

    # then exactly the missed ones, in order, then the live one: no gap, no duplicate
    assert replayed == missed
    assert live == "live-1"


async def test_members_only_hear_their_own_events(
    two_servers: tuple[Server, Server], world: World
) -> None:
    a, b = two_servers
    async with listening(a, world.bob_token, POINTS) as bobs:
        await until_live(b, world, world.bob, bobs)
        with contextlib.suppress(TimeoutError):
            while True:  # late probes
                await next_result(bobs, within=0.5)
        for n in range(3):
            await purchase(b, world, world.ann, f"ann-{n}")
        await purchase(b, world, world.bob, "bob-1")
        assert reference_of(await next_result(bobs)) == "bob-1"
        with pytest.raises(TimeoutError):
            await next_result(bobs, within=0.5)


async def close_code(server: Server, messages: list[str], *, subprotocol: str) -> int | None:
    async with connect(server.ws, subprotocols=[subprotocol]) as socket:  # type: ignore[list-item]
        for message in messages:
            await socket.send(message)
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.wait_for(socket.recv(), timeout=10)
        return socket.close_code


async def test_connections_without_a_valid_credential_in_time_are_closed(
    two_servers: tuple[Server, Server], world: World
) -> None:
    a, _ = two_servers
    protocol = "graphql-transport-ws"

    def init(payload: dict[str, str]) -> str:
        return json.dumps({"type": "connection_init", "payload": payload})

    assert await close_code(a, [init({})], subprotocol=protocol) == 4403
    bad = {"authorization": "Bearer not-a-token"}
    assert await close_code(a, [init(bad)], subprotocol=protocol) == 4403
    # no connection_init within LAUREL_WS_INIT_TIMEOUT_SECONDS (5 s here)
    assert await close_code(a, [], subprotocol=protocol) == 4408
    # subscribing before connection_init
    query = "subscription { pointsUpdated { balance { available } } }"
    subscribe = json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}})
    assert await close_code(a, [subscribe], subprotocol=protocol) == 4401


async def test_the_legacy_subprotocol_is_refused(two_servers: tuple[Server, Server]) -> None:
    a, _ = two_servers
    with pytest.raises((InvalidStatus, NegotiationError, ConnectionClosed)):
        async with connect(a.ws, subprotocols=["graphql-ws"]) as socket:  # type: ignore[list-item]
            await socket.send('{"type": "connection_init", "payload": {}}')
            await asyncio.wait_for(socket.recv(), timeout=5)


async def test_an_expired_token_ends_the_connection(
    two_servers: tuple[Server, Server], world: World
) -> None:
    a, _ = two_servers
    now = datetime.now(UTC)
    short = access.issue_member_token(
        subject=encode_id("Member", world.ann),
        secret=JWT_SECRET,
        now=now,
        ttl=timedelta(seconds=2),
    )
    init = json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {short}"}})
    started = asyncio.get_running_loop().time()
    code = await close_code(a, [init], subprotocol="graphql-transport-ws")
    assert code == 4403
    assert asyncio.get_running_loop().time() - started >= 1.0  # acknowledged, then closed


async def test_a_connection_holds_a_bounded_number_of_subscriptions(
    two_servers: tuple[Server, Server], world: World
) -> None:
    a, _ = two_servers
    async with Client(transport=transport(a, world.ann_token)) as session:
        streams = [session.subscribe(POINTS) for _ in range(4)]  # the limit here is 3
        tasks = [asyncio.create_task(anext(stream)) for stream in streams]
        done, pending = await asyncio.wait(tasks, timeout=5)
        refused = [t for t in done if isinstance(t.exception(), Exception)]
        assert len(refused) == 1
        assert "limit" in str(refused[0].exception()).lower()
        for task in pending:
            task.cancel()
        for stream in streams:
            with contextlib.suppress(Exception):
                await stream.aclose()


async def test_shutdown_closes_sockets_with_a_code_that_says_reconnect(
    redis_prefix: str, world: World
) -> None:
    server = Server(free_port(), server_env(redis_prefix)).start()
    try:
        async with connect(server.ws, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
            init = {
                "type": "connection_init",
                "payload": {"authorization": f"Bearer {world.ann_token}"},
            }
            await socket.send(json.dumps(init))
            assert json.loads(await socket.recv())["type"] == "connection_ack"
            await asyncio.to_thread(server.stop)  # SIGTERM, as an orchestrator sends
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(socket.recv(), timeout=15)
            assert socket.close_code == 1012  # service restart: clients reconnect elsewhere
    finally:
        server.stop()


async def test_a_reused_dashboard_on_one_process_sees_a_purchase_made_on_another(
    two_servers: tuple[Server, Server], world: World
) -> None:
    a, b = two_servers
    query = {"query": "{ me { balance { available } transactions(first: 1) { totalCount } } }"}
    headers = {"authorization": f"Bearer {world.ann_token}"}
    async with httpx.AsyncClient(base_url=a.http, timeout=10) as client:

        async def seen() -> dict[str, Any]:
            body = (await client.post("/graphql", json=query, headers=headers)).json()
            assert "errors" not in body, body
            me: dict[str, Any] = body["data"]["me"]
            return me

        before = await seen()
        assert await seen() == before  # answered again (from A's member views)
        await purchase(b, world, world.ann, "elsewhere")
        deadline = asyncio.get_running_loop().time() + 3
        while (now := await seen()) == before:
            assert asyncio.get_running_loop().time() < deadline, "A kept the old view"
            await asyncio.sleep(0.02)
        assert now["transactions"]["totalCount"] == before["transactions"]["totalCount"] + 1
