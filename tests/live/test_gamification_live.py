"""Gamification live: `memberEvents` delivers ChallengeCompleted and BadgeAwarded to the member
over a real WebSocket (gql, graphql-transport-ws), live from another process and replayed with
`after`. Two `laurel serve` processes on the real clock, sharing PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportClosed, TransportConnectionFailed
from gql.transport.websockets import WebsocketsTransport
from sqlalchemy.ext.asyncio import AsyncEngine

from models import KeyRole
from models.engine import session_factory
from schema.ids import decode_id, encode_cursor, encode_id
from services import access, members
from tests.conftest import JWT_SECRET
from tests.live.conftest import Server, running

EVENTS = gql(
    """subscription($after: String) { memberEvents(after: $after) { cursor occurredAt payload {
        __typename
        ... on PointsUpdate { transaction { kind reference points } balance { available } }
        ... on ChallengeCompleted { completedAt challenge { id name rewardPoints badge { name } } }
        ... on BadgeAwarded { awardedAt badge { id name } } } } }"""
)
PURCHASE = """mutation($input: RecordPurchaseInput!) { recordPurchase(input: $input) {
    transaction { id } userErrors { code message } } }"""
CREATE_BADGE = """mutation($input: CreateBadgeInput!) { createBadge(input: $input) {
    badge { id name } userErrors { code message } } }"""
CREATE_CHALLENGE = """mutation($input: CreateChallengeInput!) { createChallenge(input: $input) {
    challenge { id name startsAt } userErrors { code message } } }"""
ME = "{ me { badges { badge { name } } challenges { challenge { name } progress completedAt } } }"


@dataclass
class World:
    admin_key: str
    service_key: str
    ann: int
    ann_token: str


@pytest.fixture
async def world(pg: AsyncEngine) -> World:
    now = datetime.now(UTC)  # the servers run on the real clock
    async with session_factory(pg).begin() as session:
        admin = await access.create_api_key(session, role=KeyRole.ADMIN, name="ops", now=now)
        service = await access.create_api_key(session, role=KeyRole.SERVICE, name="shop", now=now)
        ann = await members.enroll(session, email="ann@example.com", display_name="Ann", now=now)
    token = access.issue_member_token(
        subject=encode_id("Member", ann.id), secret=JWT_SECRET, now=now, ttl=timedelta(hours=1)
    )
    return World(admin.secret, service.secret, ann.id, token)


async def post(server: Server, key: str, document: str, **input: object) -> dict[str, Any]:
    """A mutation's payload, which must have no errors and no userErrors."""
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as client:
        response = await client.post(
            "/graphql",
            json={"query": document, "variables": {"input": input}},
            headers={"authorization": f"Bearer {key}"},
        )
    body = response.json()
    assert "errors" not in body, body
    payload: dict[str, Any] = next(iter(body["data"].values()))
    assert payload["userErrors"] == [], body
    return payload


async def purchase(server: Server, world: World, order_id: str, amount: float = 10) -> None:
    member = encode_id("Member", world.ann)
    await post(
        server, world.service_key, PURCHASE, memberId=member, orderId=order_id, amount=amount
    )


async def gamify(server: Server, world: World, threshold: int) -> tuple[dict[str, Any], ...]:
    """A one-purchase challenge starting now that awards a badge, and a threshold badge for
    a lifetime spend of `threshold`: created by the admin through `server`."""
    key = world.admin_key
    badge = (await post(server, key, CREATE_BADGE, name="Live wire"))["badge"]
    spender = (
        await post(
            server,
            key,
            CREATE_BADGE,
            name="Big spender",
            metric="PURCHASE_AMOUNT",
            threshold=threshold,
        )
    )["badge"]
    challenge = (
        await post(
            server,
            key,
            CREATE_CHALLENGE,
            name="First live order",
            metric="PURCHASE_COUNT",
            goal=1,
            rewardPoints=25,
            badgeId=badge["id"],
            startsAt=datetime.now(UTC).isoformat(),  # earlier purchases do not count
        )
    )["challenge"]
    return badge, spender, challenge


@contextlib.asynccontextmanager
async def listening(
    server: Server, token: str, variables: dict[str, Any] | None = None
) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    """memberEvents results as they come, in a queue, while the block runs."""
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    transport = WebsocketsTransport(
        url=server.ws,
        init_payload={"authorization": f"Bearer {token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )

    async def run() -> None:
        try:
            async with Client(transport=transport) as session:
                request = GraphQLRequest(EVENTS, variable_values=variables or {"after": None})
                async for result in session.subscribe(request):
                    received.put_nowait(result["memberEvents"])
        except TransportConnectionFailed as error:
            # Which close code, and what the server said about it.
            closed = error.__cause__
            raise AssertionError(
                f"the server closed the connection ({closed!r}):\n{server.output()[-4000:]}"
            ) from error

    async with running(run(), TransportClosed):
        yield received


async def next_event(queue: asyncio.Queue[dict[str, Any]], within: float = 10) -> dict[str, Any]:
    return await asyncio.wait_for(queue.get(), timeout=within)


async def until_live(
    server: Server, world: World, queue: asyncio.Queue[dict[str, Any]]
) -> set[str]:
    """Probe purchases until one is heard, then drain late ones: from then on the subscription
    is certainly registered and the queue empty. Returns the probes' order ids."""
    probes: set[str] = set()
    for n in range(50):
        reference = f"probe-{uuid.uuid4().hex[:8]}-{n}"
        probes.add(reference)
        await purchase(server, world, reference)
        try:
            await next_event(queue, within=0.3)
            break
        except TimeoutError:
            continue
    else:
        raise AssertionError("the subscription never went live")
    with contextlib.suppress(TimeoutError):
        while True:
            await next_event(queue, within=0.5)
    return probes


def summary(event: dict[str, Any]) -> tuple[Any, ...]:
    payload = event["payload"]
    kind = payload["__typename"]
    if kind == "PointsUpdate":
        transaction = payload["transaction"]
        return kind, transaction["kind"], transaction["reference"], transaction["points"]
    if kind == "ChallengeCompleted":
        challenge = payload["challenge"]
        assert payload["completedAt"] == event["occurredAt"]
        return kind, challenge["name"], challenge["rewardPoints"], challenge["badge"]["name"]
    assert kind == "BadgeAwarded", event
    assert payload["awardedAt"] == event["occurredAt"]
    return kind, payload["badge"]["name"]


def completing(challenge: dict[str, Any], order_id: str) -> list[tuple[Any, ...]]:
    """The events of the purchase that completes the challenge (and crosses the threshold),
    in commit order: its points, the challenge's points, the completion, then both badges."""
    decoded = decode_id(challenge["id"])
    assert decoded is not None
    period = datetime.fromisoformat(challenge["startsAt"])  # not recurring: its one period
    reference = f"challenge:{decoded[1]}:{period:%Y-%m-%d}"
    return [
        ("PointsUpdate", "PURCHASE", order_id, 50),
        ("PointsUpdate", "CHALLENGE", reference, 25),
        ("ChallengeCompleted", "First live order", 25, "Live wire"),
        ("BadgeAwarded", "Live wire"),
        ("BadgeAwarded", "Big spender"),
    ]


async def test_member_events_deliver_challenge_completed_and_badge_awarded_live(
    two_servers: tuple[Server, Server], world: World
) -> None:
    a, b = two_servers
    async with listening(a, world.ann_token) as events:
        # given a live subscriber on A, and (made through B) a challenge and two badges
        probes = await until_live(b, world, events)
        _, _, challenge = await gamify(b, world, threshold=10 * len(probes) + 50)

        # when the member's next purchase, on B, completes it and crosses the threshold
        await purchase(b, world, "the-one", amount=50)

        # then A delivers its events once, in order, to the member
        seen = [summary(await next_event(events)) for _ in range(5)]
        with pytest.raises(TimeoutError):  # and nothing else
            await next_event(events, within=0.5)

    assert seen == completing(challenge, "the-one")


async def test_reconnecting_with_after_replays_the_completion_and_the_badges(
    two_servers: tuple[Server, Server], world: World
) -> None:
    a, b = two_servers
    # given a completion while the member had no subscriber
    _, _, challenge = await gamify(a, world, threshold=50)
    await purchase(b, world, "offline", amount=50)

    # when the member subscribes with a cursor from before it
    async with listening(a, world.ann_token, {"after": encode_cursor(0)}) as events:
        replayed = [await next_event(events) for _ in range(5)]
        with pytest.raises(TimeoutError):
            await next_event(events, within=0.5)

    # then every event since the cursor comes first, in order, each with its own cursor
    assert [summary(e) for e in replayed] == completing(challenge, "offline")
    assert len({e["cursor"] for e in replayed}) == 5
    # and the member's view agrees
    async with httpx.AsyncClient(base_url=b.http, timeout=10) as client:
        body = (
            await client.post(
                "/graphql",
                json={"query": ME},
                headers={"authorization": f"Bearer {world.ann_token}"},
            )
        ).json()
    assert "errors" not in body, body
    me = body["data"]["me"]
    assert [held["badge"]["name"] for held in me["badges"]] == ["Live wire", "Big spender"]
    assert [(c["challenge"]["name"], c["progress"]) for c in me["challenges"]] == [
        ("First live order", 1)
    ]
    assert me["challenges"][0]["completedAt"] == replayed[2]["payload"]["completedAt"]
