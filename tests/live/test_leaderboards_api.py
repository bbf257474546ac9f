"""Leaderboards over HTTP and over a real WebSocket.

* The in-process app (`api` fixture: PostgreSQL and SQLite, no Redis, so the database answers
  every board; its clock is a ManualClock): ranks with ties, `isMe` / `me`, `Member.rank`,
  display names only, refunds lowering a rank, `first` bounds, and periods.
* A live `laurel serve` with Redis (a key prefix of its own): the same boards served from Redis
  sorted sets, equal to the database's, and `leaderboardUpdated` over graphql-transport-ws.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportClosed
from gql.transport.websockets import WebsocketsTransport
from redis import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from models import KeyRole
from models.engine import read_session_factory, session_factory
from schema.ids import encode_id
from services import access, members
from services.leaderboards import Board, Period, board_from_database
from tests.conftest import JWT_SECRET, Api
from tests.live.conftest import REDIS_URL, Server, free_port, running, server_env

BOARD = """query($period: LeaderboardPeriod!, $first: Int) {
    leaderboard(period: $period, first: $first) {
        period entries { rank displayName points isMe }
        me { rank displayName points isMe } totalRanked } }"""
MY_RANKS = """{ me { displayName
    allTime: rank { rank displayName points isMe }
    monthly: rank(period: MONTHLY) { rank points }
    weekly: rank(period: WEEKLY) { rank points } } }"""
PURCHASE = """mutation($input: RecordPurchaseInput!) { recordPurchase(input: $input) {
    transaction { points } userErrors { code message } } }"""
REFUND = """mutation($input: RefundPurchaseInput!) { refundPurchase(input: $input) {
    transaction { points } userErrors { code message } } }"""
LIVE_BOARD = gql(
    """subscription($first: Int) { leaderboardUpdated(first: $first) {
        period entries { rank displayName points isMe } me { rank points } totalRanked } }"""
)

NAMES = ("Ann", "Bob", "Cy", "Dee", "Eve")


def email(name: str) -> str:
    return f"{name.lower()}@example.com"


def ranks(board: dict[str, Any]) -> list[tuple[int, str, int]]:
    return [(e["rank"], e["displayName"], e["points"]) for e in board["entries"]]


def as_rows(board: Board) -> list[tuple[int, str, int]]:
    return [(s.rank, s.display_name, s.points) for s in board.entries]


async def call(
    api: Api, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = await api.gql(query, variables, token=token)
    return body


def purchase_input(member_id: int, order: str, amount: float) -> dict[str, Any]:
    member = encode_id("Member", member_id)
    return {"input": {"memberId": member, "orderId": order, "amount": amount}}


def data(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]
    return result


# ---------------------------------------------------------------- the in-process app


@dataclass
class Cast:
    api: Api
    service: str
    ids: dict[str, int]

    def token(self, name: str) -> str:
        return self.api.member_token(self.ids[name])

    async def buy(self, name: str, order: str, amount: float) -> None:
        body = data(
            await call(
                self.api,
                PURCHASE,
                purchase_input(self.ids[name], order, amount),
                token=self.service,
            )
        )
        assert body["recordPurchase"]["userErrors"] == [], body

    async def refund(self, order: str, refund: str, amount: float | None) -> int:
        variables = {"input": {"orderId": order, "refundId": refund, "amount": amount}}
        body = data(await call(self.api, REFUND, variables, token=self.service))
        assert body["refundPurchase"]["userErrors"] == [], body
        points: int = body["refundPurchase"]["transaction"]["points"]
        return points

    async def board(
        self, period: str = "ALL_TIME", first: int = 10, *, viewer: str | None = None
    ) -> dict[str, Any]:
        token = self.token(viewer) if viewer else None
        body = await call(self.api, BOARD, {"period": period, "first": first}, token=token)
        board: dict[str, Any] = data(body)["leaderboard"]
        return board


async def cast_of(api: Api) -> Cast:
    """Ann, Bob, Cy, Dee and Eve, enrolled in that order (member ids ascending)."""
    ids = {}
    for name in NAMES:
        async with api.sessions.begin() as session:
            member = await members.enroll(
                session, email=email(name), display_name=name, now=api.clock.now()
            )
            ids[name] = member.id
    return Cast(api, await api.key(KeyRole.SERVICE), ids)


async def standings(cast: Cast) -> None:
    """Ann 300, Bob 200, Cy 200, Dee 100; Eve earns nothing (unranked)."""
    for name, amount in (("Ann", 300), ("Bob", 200), ("Cy", 200), ("Dee", 100)):
        await cast.buy(name, f"order-{name}", amount)


async def test_ties_share_the_better_rank_and_only_my_entry_is_mine(api: Api) -> None:
    cast = await cast_of(api)
    await standings(cast)

    mine = await cast.board(viewer="Cy")
    assert mine["period"] == "ALL_TIME"
    assert ranks(mine) == [(1, "Ann", 300), (2, "Bob", 200), (2, "Cy", 200), (4, "Dee", 100)]
    assert [e["isMe"] for e in mine["entries"]] == [False, False, True, False]
    assert mine["me"] == {"rank": 2, "displayName": "Cy", "points": 200, "isMe": True}
    assert mine["totalRanked"] == 4

    anonymous = await cast.board()
    assert ranks(anonymous) == ranks(mine)
    assert not any(e["isMe"] for e in anonymous["entries"])
    assert anonymous["me"] is None

    unranked = await cast.board(viewer="Eve")  # a member without points: listed nowhere
    assert unranked["me"] is None
    assert not any(e["isMe"] for e in unranked["entries"])
    assert unranked["totalRanked"] == 4

    top = await cast.board(first=2, viewer="Dee")  # outside the page: still `me`
    assert ranks(top) == [(1, "Ann", 300), (2, "Bob", 200)]
    assert top["me"] == {"rank": 4, "displayName": "Dee", "points": 100, "isMe": True}
    assert top["totalRanked"] == 4


async def test_member_rank_per_period(api: Api) -> None:
    cast = await cast_of(api)
    await standings(cast)

    bob = data(await call(api, MY_RANKS, token=cast.token("Bob")))["me"]
    assert bob["allTime"] == {"rank": 2, "displayName": "Bob", "points": 200, "isMe": True}
    assert bob["monthly"] == {"rank": 2, "points": 200}
    assert bob["weekly"] == {"rank": 2, "points": 200}

    eve = data(await call(api, MY_RANKS, token=cast.token("Eve")))["me"]
    assert eve == {"displayName": "Eve", "allTime": None, "monthly": None, "weekly": None}


async def test_boards_show_display_names_never_emails(api: Api) -> None:
    cast = await cast_of(api)
    await standings(cast)

    for viewer in (None, "Ann", "Eve"):
        token = cast.token(viewer) if viewer else None
        response = await api.client.post(
            "/graphql",
            json={"query": BOARD, "variables": {"period": "ALL_TIME", "first": 100}},
            headers={"authorization": f"Bearer {token}"} if token else {},
        )
        assert response.status_code == 200
        assert "@example.com" not in response.text
        assert "email" not in response.text.lower()
        assert {e["displayName"] for e in response.json()["data"]["leaderboard"]["entries"]} == {
            "Ann",
            "Bob",
            "Cy",
            "Dee",
        }

    # and there is no field to ask for one
    body = await call(api, "{ leaderboard { entries { displayName email } } }")
    assert body.get("data") is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "@example.com" not in json.dumps(body)


async def test_refunds_lower_a_members_rank(api: Api) -> None:
    cast = await cast_of(api)
    await standings(cast)
    assert (await cast.board(viewer="Ann"))["me"]["rank"] == 1

    # a partial refund reverses part of Ann's 300: 150 left, behind Bob and Cy
    assert await cast.refund("order-Ann", "refund-1", 150.0) == -150
    after = await cast.board(viewer="Ann")
    assert ranks(after) == [(1, "Bob", 200), (1, "Cy", 200), (3, "Ann", 150), (4, "Dee", 100)]
    assert after["me"] == {"rank": 3, "displayName": "Ann", "points": 150, "isMe": True}
    rank = data(await call(api, MY_RANKS, token=cast.token("Ann")))["me"]["allTime"]
    assert rank == {"rank": 3, "displayName": "Ann", "points": 150, "isMe": True}

    # the rest of it: Ann earned nothing that still counts, and leaves the board
    assert await cast.refund("order-Ann", "refund-2", None) == -150
    gone = await cast.board(viewer="Ann")
    assert ranks(gone) == [(1, "Bob", 200), (1, "Cy", 200), (3, "Dee", 100)]
    assert gone["me"] is None
    assert gone["totalRanked"] == 3

    # a refund lowers Bob below Cy: the tie is broken
    await cast.refund("order-Bob", "refund-3", 1.0)
    assert ranks(await cast.board()) == [(1, "Cy", 200), (2, "Bob", 199), (3, "Dee", 100)]


@pytest.mark.parametrize("first", [0, -1, 101])
async def test_first_outside_1_to_100_is_bad_user_input(api: Api, first: int) -> None:
    cast = await cast_of(api)
    await standings(cast)
    body = await call(api, BOARD, {"period": "ALL_TIME", "first": first})
    assert body.get("data") is None, body
    codes = [error["extensions"]["code"] for error in body["errors"]]
    assert codes == ["BAD_USER_INPUT"], body

    # the bounds themselves are fine
    assert len((await cast.board(first=1))["entries"]) == 1
    assert len((await cast.board(first=100))["entries"]) == 4


async def test_monthly_and_weekly_boards_count_only_their_period(api: Api) -> None:
    cast = await cast_of(api)
    noon = datetime(2026, 1, 5, 12, tzinfo=UTC)  # a Monday
    api.clock.set(noon)
    await cast.buy("Ann", "jan-5-ann", 300)
    await cast.buy("Bob", "jan-5-bob", 200)
    api.clock.set(datetime(2026, 1, 30, 12, tzinfo=UTC))  # Friday: January, last week
    await cast.buy("Cy", "jan-30-cy", 40)
    api.clock.set(datetime(2026, 2, 1, 12, tzinfo=UTC))  # Sunday: February, last week
    await cast.buy("Dee", "feb-1-dee", 70)
    api.clock.set(datetime(2026, 2, 3, 12, tzinfo=UTC))  # Tuesday: February, this week
    await cast.buy("Bob", "feb-3-bob", 50)
    await cast.buy("Eve", "feb-3-eve", 20)

    all_time = await cast.board("ALL_TIME", viewer="Ann")
    assert ranks(all_time) == [
        (1, "Ann", 300),
        (2, "Bob", 250),
        (3, "Dee", 70),
        (4, "Cy", 40),
        (5, "Eve", 20),
    ]
    assert all_time["me"]["rank"] == 1
    assert all_time["totalRanked"] == 5

    monthly = await cast.board("MONTHLY", viewer="Ann")
    assert monthly["period"] == "MONTHLY"
    assert ranks(monthly) == [(1, "Dee", 70), (2, "Bob", 50), (3, "Eve", 20)]
    assert monthly["me"] is None  # Ann earned nothing in February
    assert monthly["totalRanked"] == 3

    weekly = await cast.board("WEEKLY", viewer="Bob")
    assert ranks(weekly) == [(1, "Bob", 50), (2, "Eve", 20)]
    assert weekly["me"] == {"rank": 1, "displayName": "Bob", "points": 50, "isMe": True}

    ann = data(await call(api, MY_RANKS, token=cast.token("Ann")))["me"]
    assert ann["allTime"]["rank"] == 1
    assert ann["monthly"] is None
    dee = data(await call(api, MY_RANKS, token=cast.token("Dee")))["me"]
    assert (dee["allTime"]["rank"], dee["monthly"], dee["weekly"]) == (
        3,
        {"rank": 1, "points": 70},
        None,
    )

    # a month later January's points count for no current period but all time
    api.clock.set(datetime(2026, 3, 2, 12, tzinfo=UTC))
    assert ranks(await cast.board("MONTHLY")) == []
    assert (await cast.board("MONTHLY"))["totalRanked"] == 0
    assert ranks(await cast.board("ALL_TIME")) == ranks(all_time)


# ---------------------------------------------------------------- a live server with Redis


@dataclass
class LiveCast:
    server: Server
    engine: AsyncEngine
    service: str
    ids: dict[str, int]
    tokens: dict[str, str]

    async def buy(self, name: str, order: str, amount: float) -> None:
        await self._call(PURCHASE, purchase_input(self.ids[name], order, amount), "recordPurchase")

    async def refund(self, order: str, refund: str, amount: float | None) -> None:
        variables = {"input": {"orderId": order, "refundId": refund, "amount": amount}}
        await self._call(REFUND, variables, "refundPurchase")

    async def _call(self, query: str, variables: dict[str, Any], field: str) -> None:
        async with httpx.AsyncClient(base_url=self.server.http, timeout=10) as client:
            response = await client.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"authorization": f"Bearer {self.service}"},
            )
        body = data(response.json())
        assert body[field]["userErrors"] == [], body

    async def board(self, first: int = 10, *, viewer: str | None = None) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {self.tokens[viewer]}"} if viewer else {}
        async with httpx.AsyncClient(base_url=self.server.http, timeout=10) as client:
            response = await client.post(
                "/graphql",
                json={"query": BOARD, "variables": {"period": "ALL_TIME", "first": first}},
                headers=headers,
            )
        board: dict[str, Any] = data(response.json())["leaderboard"]
        return board

    async def from_database(self, *, viewer: str | None = None) -> Board:
        async with read_session_factory(self.engine)() as session:
            return await board_from_database(
                session,
                Period.ALL_TIME,
                datetime.now(UTC),
                first=10,
                member_id=self.ids[viewer] if viewer else None,
            )

    async def agreed(self, *, viewer: str, within: float = 5.0) -> dict[str, Any]:
        """The served board once it equals the database's (Redis is written ~0.1 s after a
        commit, by a background task): fails if it does not within `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            served = await self.board(viewer=viewer)
            expected = await self.from_database(viewer=viewer)
            me = None if expected.me is None else expected.me.rank
            got = (ranks(served), served["totalRanked"], (served["me"] or {}).get("rank"))
            if got == (as_rows(expected), expected.total_ranked, me):
                return served
            if time.monotonic() > deadline:
                raise AssertionError(f"served {got}, database {expected}")
            await asyncio.sleep(0.05)


@pytest.fixture
def live_server() -> Iterator[Server]:
    """A `laurel serve` with Redis under a key prefix of its own, deleted afterwards."""
    prefix = f"laureltest:{uuid.uuid4().hex[:12]}:"
    server = Server(free_port(), server_env(prefix))
    try:
        yield server.start()
    finally:
        server.stop()
        client = Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=f"{prefix}*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@pytest.fixture
async def live(pg: AsyncEngine, live_server: Server) -> LiveCast:
    now = datetime.now(UTC)  # the server runs on the real clock
    ids, tokens = {}, {}
    async with session_factory(pg).begin() as session:
        key = await access.create_api_key(session, role=KeyRole.SERVICE, name="shop", now=now)
        for name in NAMES:
            member = await members.enroll(session, email=email(name), display_name=name, now=now)
            ids[name] = member.id
            tokens[name] = access.issue_member_token(
                subject=encode_id("Member", member.id),
                secret=JWT_SECRET,
                now=now,
                ttl=timedelta(hours=1),
            )
    return LiveCast(live_server, pg, key.secret, ids, tokens)


async def test_boards_served_from_redis_equal_the_databases(live: LiveCast) -> None:
    for name, amount in (("Ann", 300), ("Bob", 200), ("Cy", 200), ("Dee", 100)):
        await live.buy(name, f"order-{name}", amount)

    board = await live.agreed(viewer="Cy")
    assert ranks(board) == [(1, "Ann", 300), (2, "Bob", 200), (2, "Cy", 200), (4, "Dee", 100)]
    assert [e["isMe"] for e in board["entries"]] == [False, False, True, False]
    assert board["me"] == {"rank": 2, "displayName": "Cy", "points": 200, "isMe": True}
    assert "@example.com" not in json.dumps(board)

    # the board lives in Redis now, under the server's prefix
    client = Redis.from_url(REDIS_URL)
    try:
        prefix = live.server.env["LAUREL_REDIS_PREFIX"]
        assert client.exists(f"{prefix}lb:built:ALL_TIME") == 1
        assert client.zcard(f"{prefix}lb:board:ALL_TIME") == 4
    finally:
        client.close()

    # a refund moves Ann down, and the Redis board follows
    await live.refund("order-Ann", "refund-1", 150.0)
    board = await live.agreed(viewer="Ann")
    assert ranks(board) == [(1, "Bob", 200), (1, "Cy", 200), (3, "Ann", 150), (4, "Dee", 100)]
    assert board["me"] == {"rank": 3, "displayName": "Ann", "points": 150, "isMe": True}

    await live.refund("order-Ann", "refund-2", None)
    board = await live.agreed(viewer="Ann")
    assert board["me"] is None
    assert board["totalRanked"] == 3


# ---------------------------------------------------------------- leaderboardUpdated


@contextlib.asynccontextmanager
async def live_boards(
    server: Server, token: str, first: int
) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
    """`leaderboardUpdated(first:)` results, in a queue, while the block runs."""
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    transport = WebsocketsTransport(
        url=server.ws,
        init_payload={"authorization": f"Bearer {token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )

    async def run() -> None:
        async with Client(transport=transport) as session:
            request = GraphQLRequest(LIVE_BOARD, variable_values={"first": first})
            async for result in session.subscribe(request):
                received.put_nowait(result["leaderboardUpdated"])

    async with running(run(), TransportClosed):
        yield received


async def standings_of_five(live: LiveCast) -> None:
    """Ann 300, Bob 200, Cy 150 (the top 3); Dee 100 and Eve 50 below."""
    for name, amount in (("Ann", 300), ("Bob", 200), ("Cy", 150), ("Dee", 100), ("Eve", 50)):
        await live.buy(name, f"order-{name}", amount)
    await live.agreed(viewer="Eve")


async def current_board(boards: asyncio.Queue[dict[str, Any]]) -> dict[str, Any]:
    """The subscription's first message: the board as it is."""
    first = await asyncio.wait_for(boards.get(), timeout=10)
    assert first["period"] == "ALL_TIME"
    assert ranks(first) == [(1, "Ann", 300), (2, "Bob", 200), (3, "Cy", 150)]
    assert not any(e["isMe"] for e in first["entries"])
    assert first["me"] == {"rank": 5, "points": 50}
    assert first["totalRanked"] == 5
    return first


async def test_leaderboard_updated_sends_the_board_when_its_top_changes(live: LiveCast) -> None:
    await standings_of_five(live)
    async with live_boards(live.server, live.tokens["Eve"], first=3) as boards:
        await current_board(boards)

        # Dee catches up with Bob and pushes Cy out of the top 3: the new board, promptly
        started = time.monotonic()
        await live.buy("Dee", "dee-2", 100)
        changed = await asyncio.wait_for(boards.get(), timeout=3)
        assert time.monotonic() - started < 3
        assert ranks(changed) == [(1, "Ann", 300), (2, "Bob", 200), (2, "Dee", 200)]
        assert changed["me"] == {"rank": 5, "points": 50}
        assert changed["totalRanked"] == 5

        # Eve earns, but stays outside the top 3: nothing is sent
        await live.buy("Eve", "eve-2", 10)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(boards.get(), timeout=2.5)


async def test_leaderboard_updated_sends_a_change_after_a_quiet_spell(live: LiveCast) -> None:
    await standings_of_five(live)
    async with live_boards(live.server, live.tokens["Eve"], first=3) as boards:
        await current_board(boards)
        await asyncio.sleep(1.5)  # nothing happens for a while (longer than the throttle)

        await live.buy("Dee", "dee-2", 100)
        changed = await asyncio.wait_for(boards.get(), timeout=3)
        assert ranks(changed) == [(1, "Ann", 300), (2, "Bob", 200), (2, "Dee", 200)]
