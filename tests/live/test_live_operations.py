"""`pointsUpdated` both ways: answered by Laurel's handler (`api.live_operations`) on one
`laurel serve`, by strawberry's subscription machinery on another (`LAUREL_LIVE_PLANS=false`),
the same documents subscribed on both over real WebSockets: every frame must be the same,
byte for byte, in the same order, including field errors, erasure ending the stream, and a
database that goes away under it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from gql import Client, gql
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from websockets.asyncio.client import ClientConnection, connect

from api.database import prepare_database
from models import KeyRole
from models.engine import create_engine, session_factory
from schema.ids import encode_id
from services import access, members
from tests.conftest import JWT_SECRET, PG_URL
from tests.live.conftest import (
    REDIS_URL,
    Server,
    free_port,
    record_purchase,
    running,
    server_env,
)
from tests.live.test_subscriptions import transport

# Each names the transaction's reference somewhere, so that a frame can be told apart.
DOCUMENTS = [
    "subscription { pointsUpdated { transaction { reference points } balance { available } } }",
    """subscription Everything { pointsUpdated { __typename
        member { __typename id externalId email displayName birthday joinedAt referralCode
            status attributes leaderboardOptOut
            balance { available pending lifetimeEarned redeemed expired
                expiringSoon { points expiresAt } }
            tier { id name rank threshold multiplier benefits }
            tierProgress { current { name } next { name threshold } qualifyingPoints
                pointsToNext }
            transactions(first: 2) { edges { cursor node { points reference } }
                pageInfo { hasNextPage } }
            badges { awardedAt } challenges { __typename }
            rank { rank points isMe } }
        transaction { __typename id kind points status description reference createdAt
            availableAt expiresAt breakdown { label points } activityType { key name } }
        balance { available pending lifetimeEarned redeemed expired } } }""",
    """subscription Aliased { live: pointsUpdated { ...Change } }
    fragment Change on PointsUpdate {
        balance { a: available b: available ...on PointsBalance { pending } }
        transaction { ref: reference, kind } }""",
    """subscription { pointsUpdated { balance @include(if: true) { pending }
        member @skip(if: true) { id } transaction { reference } } }""",
    # A field error: its path and code, and the rest of the data.
    """subscription { pointsUpdated { transaction { reference }
        member { experimentGroup(promotionId: "not-an-id") } } }""",
    # Declares a variable: strawberry runs it on both.
    """subscription($show: Boolean = true) { pointsUpdated {
        transaction { reference } balance @include(if: $show) { available } } }""",
]


@dataclass
class Member:
    id: int
    token: str
    service_key: str


@dataclass
class Listener:
    """One connection with every document subscribed (ids `0`, `1`, ...), its frames kept."""

    socket: ClientConnection
    frames: list[str] = field(default_factory=list)

    def of(self, operation_id: str) -> list[str]:
        return [f for f in self.frames if json.loads(f).get("id") == operation_id]


@contextlib.contextmanager
def both(redis_prefix: str, database_url: str = PG_URL) -> Iterator[tuple[Server, Server]]:
    """A server answering `pointsUpdated` itself, and one leaving it to strawberry."""
    env = {"LAUREL_MAX_SUBSCRIPTIONS_PER_CONNECTION": "20", "LAUREL_DATABASE_URL": database_url}
    planned = Server(free_port(), server_env(redis_prefix, **env))
    strawberry = Server(free_port(), server_env(redis_prefix, **env, LAUREL_LIVE_PLANS="false"))
    try:
        yield planned.start(), strawberry.start()
    finally:
        planned.stop()
        strawberry.stop()


@pytest.fixture(scope="module")
def servers(redis_prefix: str, pg_before_servers: AsyncEngine) -> Iterator[tuple[Server, Server]]:
    with both(redis_prefix) as pair:
        yield pair


async def enrolled(engine: AsyncEngine, email: str) -> Member:
    now = datetime.now(UTC)
    async with session_factory(engine).begin() as session:
        key = await access.create_api_key(session, role=KeyRole.SERVICE, name="shop", now=now)
        member = await members.enroll(session, email=email, display_name="Ann", now=now)
    token = access.issue_member_token(
        subject=encode_id("Member", member.id), secret=JWT_SECRET, now=now, ttl=timedelta(hours=1)
    )
    return Member(member.id, token, key.secret)


@contextlib.asynccontextmanager
async def listener(server: Server, token: str) -> AsyncIterator[Listener]:
    async with connect(server.ws, subprotocols=["graphql-transport-ws"]) as socket:  # type: ignore[list-item]
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await socket.send(json.dumps(init))
        assert json.loads(await socket.recv())["type"] == "connection_ack"
        for number, query in enumerate(DOCUMENTS):
            message = {"id": str(number), "type": "subscribe", "payload": {"query": query}}
            await socket.send(json.dumps(message))
        kept = Listener(socket)

        async def read() -> None:
            async for frame in socket:
                assert isinstance(frame, str)
                kept.frames.append(frame)

        async with running(read(), Exception):
            yield kept


async def until(condition: Any, within: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def buy(server: Server, member: Member, order_id: str) -> None:
    await record_purchase(server, member.service_key, member.id, order_id)


def complete(operation_id: str) -> str:
    """A `complete` frame as the server writes it (orjson: no spaces)."""
    return json.dumps({"id": operation_id, "type": "complete"}, separators=(",", ":"))


async def live_on_both(server: Server, member: Member, listeners: list[Listener]) -> None:
    """Probe purchases until every operation on every connection has had one: from then
    on each is certainly past its cursor."""
    ids = [str(n) for n in range(len(DOCUMENTS))]
    for _ in range(20):
        await buy(server, member, f"probe-{uuid.uuid4().hex[:8]}")
        with contextlib.suppress(AssertionError):
            await until(lambda: all(ln.of(i) for ln in listeners for i in ids), within=2)
            return
    raise AssertionError("subscriptions never went live")


def reference_of(frame: str) -> str | None:
    """The reference of the transaction a `next` frame is about (None: another frame)."""
    data = json.loads(frame).get("payload", {}).get("data") or {}
    change = next(iter(data.values()), None) or {}
    transaction = change.get("transaction") or {}
    return transaction.get("reference") or transaction.get("ref")


def with_reference(frames: list[str], reference: str) -> list[str]:
    return [f for f in frames if reference_of(f) == reference]


# `member.rank` comes from the Redis board, which a background writer brings up to date about
# 0.1 s after each commit (services.leaderboards): a delivery made before the write shows the
# standing before the purchase, so two processes may differ there by when each delivered. Its
# shape must match; its figures are compared where nothing is in flight (test_member_views).
RACING = {
    ".payload.data.pointsUpdated.member.rank.points",
    ".payload.data.pointsUpdated.member.rank.rank",
}


def differences(mine: str, theirs: str) -> list[str]:
    """Where two frames differ (outside RACING): each path with both values."""
    found: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
            for key in a:
                walk(a[key], b[key], f"{path}.{key}")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for index, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{path}[{index}]")
        elif path in RACING and type(a) is type(b) is int:
            return
        elif a != b:
            found.append(f"{path}: {a!r} != {b!r}")

    walk(json.loads(mine), json.loads(theirs), "")
    if not found and _without_racing(mine) != _without_racing(theirs):
        found.append(f"the same JSON, other text: {mine!r} != {theirs!r}")
    return found


def _without_racing(frame: str) -> str:
    """The frame's text with RACING's figures blanked (the text must match too: key order)."""
    return re.sub(r'"rank":\{"rank":\d+,"points":\d+', '"rank":{"rank":0,"points":0', frame)


async def metric(server: Server, name: str) -> float:
    async with httpx.AsyncClient(base_url=server.http, timeout=5) as client:
        text = (await client.get("/metrics")).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found is not None, name
    return float(found.group(1))


async def test_every_frame_is_the_same_either_way(
    servers: tuple[Server, Server], pg: AsyncEngine
) -> None:
    planned, strawberry = servers
    ann = await enrolled(pg, "ann@example.com")
    async with listener(planned, ann.token) as a, listener(strawberry, ann.token) as b:
        await live_on_both(planned, ann, [a, b])
        # The planned server answered all but the document with a variable.
        assert await metric(planned, "laurel_live_planned_subscriptions") == len(DOCUMENTS) - 1
        assert await metric(strawberry, "laurel_live_planned_subscriptions") == 0
        references = [f"order-{n}-{uuid.uuid4().hex[:8]}" for n in range(3)]
        for number, reference in enumerate(references):
            # Made on either process: the other hears of it through Redis.
            await buy(planned if number % 2 else strawberry, ann, reference)
            # Delivered everywhere before the next: fields such as `member.balance` are read
            # as each delivery runs.
            await until(
                lambda: all(
                    with_reference(ln.of(str(n)), reference)  # noqa: B023
                    for ln in (a, b)
                    for n in range(len(DOCUMENTS))
                )
            )
        last = references[-1]
        for number in range(len(DOCUMENTS)):
            for reference in references:
                mine = with_reference(a.of(str(number)), reference)
                theirs = with_reference(b.of(str(number)), reference)
                assert len(mine) == 1, (number, reference, mine)
                assert len(theirs) == 1, (number, reference, theirs)
                assert differences(mine[0], theirs[0]) == [], number
        error = json.loads(with_reference(a.of("4"), last)[0])["payload"]
        assert error["errors"][0]["path"] == ["pointsUpdated", "member", "experimentGroup"]
        assert error["data"]["pointsUpdated"]["member"]["experimentGroup"] is None

        # A client's `complete` ends one operation; the rest go on, and its id may be reused.
        for socket in (a.socket, b.socket):
            await socket.send(json.dumps({"id": "0", "type": "complete"}))
        after = f"after-complete-{uuid.uuid4().hex[:8]}"
        await buy(planned, ann, after)
        await until(lambda: all(with_reference(ln.of("1"), after) for ln in (a, b)))
        assert with_reference(a.of("0"), after) == with_reference(b.of("0"), after) == []
        assert await metric(planned, "laurel_live_planned_subscriptions") == len(DOCUMENTS) - 2

    # Closed sockets leave nothing behind.
    for server in servers:
        await until_metric(server, "laurel_live_subscriptions", 0)


async def until_metric(server: Server, name: str, value: float) -> None:
    for _ in range(100):
        if await metric(server, name) == value:
            return
        await asyncio.sleep(0.05)
    assert await metric(server, name) == value


async def test_erasure_ends_the_stream_the_same_way(redis_prefix: str, pg: AsyncEngine) -> None:
    cleo = await enrolled(pg, "cleo@example.com")
    # Servers of its own: they remember erased ids, which the next test's database reuses.
    with both(f"{redis_prefix}erased:") as (planned, strawberry):
        await erased_on_both(planned, strawberry, cleo, pg)


async def erased_on_both(
    planned: Server, strawberry: Server, cleo: Member, pg: AsyncEngine
) -> None:
    async with listener(planned, cleo.token) as a, listener(strawberry, cleo.token) as b:
        await live_on_both(planned, cleo, [a, b])
        async with httpx.AsyncClient(base_url=planned.http, timeout=10) as client:
            admin = await admin_key(pg)
            response = await client.post(
                "/graphql",
                json={
                    "query": """mutation($input: EraseMemberInput!) { eraseMember(input: $input)
                        { userErrors { code } } }""",
                    "variables": {"input": {"memberId": encode_id("Member", cleo.id)}},
                },
                headers={"authorization": f"Bearer {admin}"},
            )
        assert response.json()["data"]["eraseMember"]["userErrors"] == [], response.text
        completes = [complete(str(n)) for n in range(len(DOCUMENTS))]
        await until(lambda: all(c in ln.frames for ln in (a, b) for c in completes))
        for ln in (a, b):  # each once (in no particular order across operations)
            assert sorted(f for f in ln.frames if '"complete"' in f) == sorted(completes)


async def admin_key(pg: AsyncEngine) -> str:
    async with session_factory(pg).begin() as session:
        key = await access.create_api_key(
            session, role=KeyRole.ADMIN, name="ops", now=datetime.now(UTC)
        )
    return key.secret


async def test_a_database_gone_under_a_stream_ends_it_the_same_way(
    redis_prefix: str, pg: AsyncEngine
) -> None:
    """The database goes away while both wait; a hint (as another process would send) makes
    each read it: the masked error as the last result, then `complete`."""
    name = f"laurel_live_gone_{uuid.uuid4().hex[:8]}"
    admin_url = PG_URL.rsplit("/", 1)[0] + "/postgres"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    database_url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        async with admin.connect() as connection:
            await connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine = create_engine(database_url)
        try:
            await prepare_database(engine)
            dora = await enrolled(engine, "dora@example.com")
        finally:
            await engine.dispose()
        prefix = f"{redis_prefix}gone:"
        with both(prefix, database_url) as (planned, strawberry):
            async with listener(planned, dora.token) as a, listener(strawberry, dora.token) as b:
                await live_on_both(planned, dora, [a, b])
                async with admin.connect() as connection:
                    await connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                redis = Redis.from_url(REDIS_URL)
                try:
                    await redis.publish(f"{prefix}member-events", f"elsewhere:{dora.id}")
                finally:
                    await redis.aclose()
                completes = [complete(str(n)) for n in range(len(DOCUMENTS))]
                await until(lambda: all(c in ln.frames for ln in (a, b) for c in completes))
                for number in range(len(DOCUMENTS)):
                    mine, theirs = a.of(str(number))[-2:], b.of(str(number))[-2:]
                    assert mine == theirs, (
                        number,
                        differences(mine[0], theirs[0]) if mine and theirs else (mine, theirs),
                    )
                    last = json.loads(mine[0])["payload"]
                    assert last["data"] is None
                    assert [e["extensions"]["code"] for e in last["errors"]] == [
                        "INTERNAL_SERVER_ERROR"
                    ]
                    assert name not in mine[0]  # masked
    finally:
        async with admin.connect() as connection:
            await connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def test_the_planned_path_speaks_to_a_graphql_client_library(
    servers: tuple[Server, Server], pg: AsyncEngine
) -> None:
    planned, _ = servers
    eve = await enrolled(pg, "eve@example.com")
    document = gql(DOCUMENTS[0])
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def run() -> None:
        async with Client(transport=transport(planned, eve.token)) as session:
            async for result in session.subscribe(document):
                received.put_nowait(result)

    task = asyncio.create_task(run())
    try:
        for _ in range(20):
            await buy(planned, eve, f"probe-{uuid.uuid4().hex[:8]}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(received.get(), timeout=1)
                break
        reference = f"gql-{uuid.uuid4().hex[:8]}"
        await buy(planned, eve, reference)
        while True:
            result = await asyncio.wait_for(received.get(), timeout=10)
            if result["pointsUpdated"]["transaction"]["reference"] == reference:
                break
        assert result["pointsUpdated"]["balance"]["available"] > 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
