"""Redis stopped in the middle of a run, then started again, empty.

Two `laurel serve` processes (A and B) share the test PostgreSQL database and a private
`redis-server` of this test's own, on a free loopback port. Redis is killed while members
earn and redeem; everything must keep working from PostgreSQL (commits, balances, boards, the
local bus), readiness must say Redis is down, and once Redis is back (with none of its data)
the boards must be served from Redis again, rebuilt to the database's exact ranking, and
hints must cross processes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from gql import Client, gql
from gql.transport.exceptions import TransportClosed
from gql.transport.websockets import WebsocketsTransport
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from models import KeyRole, Member, RewardKind
from models.engine import read_session_factory, session_factory
from schema.ids import encode_id
from services import access, members, rewards
from services.leaderboards import Board, Period, board_from_database, encode_member
from tests.conftest import JWT_SECRET
from tests.live.conftest import LAUREL, Server, free_port, server_env

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="needs the redis-server binary")

NAMES = ("Ann", "Bob", "Cy", "Dee", "Eve")
COST = 10  # the reward's cost in points

BOARD = """{ leaderboard(period: ALL_TIME, first: 10) {
    entries { rank displayName points } totalRanked me { rank } } }"""
MY_RANK = "{ me { rank { rank points } } }"
PURCHASE = """mutation($input: RecordPurchaseInput!) { recordPurchase(input: $input) {
    transaction { points } userErrors { code message } } }"""
REDEEM = """mutation($input: RedeemRewardInput!) { redeemReward(input: $input) {
    redemption { points status } member { balance { available } }
    userErrors { code message } } }"""
POINTS = gql(
    "subscription { pointsUpdated { transaction { reference points } balance { available } } }"
)
MUTATION_BUDGET = 2.0  # seconds: nothing a request does may wait for a Redis that is gone


# ---------------------------------------------------------------- a private redis-server


@dataclass
class PrivateRedis:
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        assert REDIS_SERVER is not None
        self.process = subprocess.Popen(  # noqa: S603 (a fixed command)
            [
                *(REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        client = Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}")
                with contextlib.suppress(RedisError, OSError):
                    if client.ping():
                        return self
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer PING in 10 s")
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: gone at once, with whatever it held."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def client(self) -> Redis:
        return Redis(host="127.0.0.1", port=self.port, socket_timeout=2)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    redis = PrivateRedis(free_port())
    try:
        yield redis.start()
    finally:
        redis.kill()


@pytest.fixture
def servers(pg: AsyncEngine, private_redis: PrivateRedis) -> Iterator[tuple[Server, Server]]:
    """Processes A and B on the private Redis (and on the emptied test database)."""
    env = server_env(f"laureltest:{uuid.uuid4().hex[:12]}:", LAUREL_REDIS_URL=private_redis.url)
    started = [Server(free_port(), dict(env)) for _ in range(2)]
    try:
        for server in started:
            server.start()
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()


# ---------------------------------------------------------------- the run


@dataclass
class Run:
    a: Server
    b: Server
    redis: PrivateRedis
    engine: AsyncEngine
    service: str
    reward: str
    ids: dict[str, int]
    tokens: dict[str, str]
    http: httpx.AsyncClient
    earned: Counter[str] = field(default_factory=Counter)
    spent: Counter[str] = field(default_factory=Counter)

    @property
    def prefix(self) -> str:
        return self.a.env["LAUREL_REDIS_PREFIX"]

    async def post(
        self, server: Server, query: str, variables: dict[str, Any] | None, token: str | None
    ) -> dict[str, Any]:
        response = await self.http.post(
            f"{server.http}/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"authorization": f"Bearer {token}"} if token else {},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    async def buy(self, server: Server, name: str, order: str, amount: int) -> None:
        started = time.monotonic()
        member = encode_id("Member", self.ids[name])
        variables = {"input": {"memberId": member, "orderId": order, "amount": float(amount)}}
        payload = (await self.post(server, PURCHASE, variables, self.service))["recordPurchase"]
        assert time.monotonic() - started < MUTATION_BUDGET
        assert payload["userErrors"] == [], payload
        assert payload["transaction"]["points"] == amount
        self.earned[name] += amount

    async def redeem(self, server: Server, name: str, key: str) -> None:
        started = time.monotonic()
        variables = {"input": {"rewardId": self.reward, "idempotencyKey": key}}
        payload = (await self.post(server, REDEEM, variables, self.tokens[name]))["redeemReward"]
        assert time.monotonic() - started < MUTATION_BUDGET
        assert payload["userErrors"] == [], payload
        assert payload["redemption"] == {"points": COST, "status": "ISSUED"}
        self.spent[name] += COST
        available = self.earned[name] - self.spent[name]
        assert payload["member"]["balance"]["available"] == available

    async def balances_are_right(self) -> None:
        """In the database: every member's available points and earned points."""
        async with read_session_factory(self.engine)() as session:
            rows = (await session.execute(select(Member.id, Member.available))).all()
            by_id = {member_id: available for member_id, available in rows}
            for name, member_id in self.ids.items():
                assert by_id[member_id] == self.earned[name] - self.spent[name], name
            board = await board_from_database(
                session, Period.ALL_TIME, datetime.now(UTC), first=10, member_id=None
            )
        assert {s.display_name: s.points for s in board.entries} == {
            name: points for name, points in self.earned.items() if points > 0
        }

    async def served(self, server: Server, viewer: str | None) -> dict[str, Any]:
        token = self.tokens[viewer] if viewer else None
        board: dict[str, Any] = (await self.post(server, BOARD, None, token))["leaderboard"]
        return board

    async def expected(self, viewer: str | None) -> dict[str, Any]:
        """The board as the database computes it, shaped like the query's answer."""
        async with read_session_factory(self.engine)() as session:
            board: Board = await board_from_database(
                session,
                Period.ALL_TIME,
                datetime.now(UTC),
                first=10,
                member_id=self.ids[viewer] if viewer else None,
            )
        return {
            "entries": [
                {"rank": s.rank, "displayName": s.display_name, "points": s.points}
                for s in board.entries
            ],
            "totalRanked": board.total_ranked,
            "me": None if board.me is None else {"rank": board.me.rank},
        }

    async def boards_agree(self, within: float) -> None:
        """Both processes serve the database's board (anonymous and to a ranked member)
        within `within` seconds (the writers and the fallback's cache lag a little)."""
        deadline = time.monotonic() + within
        while True:
            mismatches = []
            for server in (self.a, self.b):
                for viewer in (None, "Dee"):
                    served = await self.served(server, viewer)
                    expected = await self.expected(viewer)
                    if served != expected:
                        mismatches.append((server.port, viewer, served, expected))
            if not mismatches:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"boards differ from the database: {mismatches}")
            await asyncio.sleep(0.1)

    async def my_rank_agrees(self, server: Server, name: str) -> None:
        mine = (await self.post(server, MY_RANK, None, self.tokens[name]))["me"]["rank"]
        expected = await self.expected(name)
        assert expected["me"] is not None
        assert mine == {"rank": expected["me"]["rank"], "points": self.earned[name]}

    async def ready(self, server: Server) -> int:
        return (await self.http.get(f"{server.http}/readyz")).status_code

    async def until_ready_is(self, status: int, within: float) -> None:
        deadline = time.monotonic() + within
        for server in (self.a, self.b):
            while (got := await self.ready(server)) != status:
                if time.monotonic() > deadline:
                    raise AssertionError(f"/readyz of {server.port} is {got}, not {status}")
                await asyncio.sleep(0.05)
            assert (await self.http.get(f"{server.http}/healthz")).status_code == 200

    def redis_exists(self, key: str) -> bool:
        client = self.redis.client()
        try:
            return bool(client.exists(key))
        finally:
            client.close()


@pytest.fixture
async def run(
    pg: AsyncEngine, servers: tuple[Server, Server], private_redis: PrivateRedis
) -> AsyncIterator[Run]:
    a, b = servers
    now = datetime.now(UTC)  # the servers run on the real clock
    ids, tokens = {}, {}
    async with session_factory(pg).begin() as session:
        key = await access.create_api_key(session, role=KeyRole.SERVICE, name="shop", now=now)
        for name in NAMES:
            member = await members.enroll(
                session, email=f"{name.lower()}@example.com", display_name=name, now=now
            )
            ids[name] = member.id
            tokens[name] = access.issue_member_token(
                subject=encode_id("Member", member.id),
                secret=JWT_SECRET,
                now=now,
                ttl=timedelta(hours=1),
            )
        reward = await rewards.create_reward(
            session,
            name="Coffee",
            description="",
            kind=RewardKind.FREE_PRODUCT,
            cost=COST,
            value=None,
            partner_id=None,
            minimum_tier_id=None,
            stock=None,
            starts_at=None,
            ends_at=None,
            per_member_limit=None,
            settlement_amount=None,
            now=now,
        )
    async with httpx.AsyncClient(timeout=10) as http:
        yield Run(
            a, b, private_redis, pg, key.secret, encode_id("Reward", reward.id), ids, tokens, http
        )


# ---------------------------------------------------------------- a subscriber of Ann's


@dataclass
class Updates:
    """Ann's pointsUpdated, as received by a client connected to process A."""

    queue: asyncio.Queue[dict[str, Any]]
    seen: list[str] = field(default_factory=list)

    async def expect(self, references: list[str], within: float, ignore: set[str]) -> None:
        """These references arrive next, in this order, each once (late `ignore`d ones
        aside), within `within` seconds."""
        deadline = time.monotonic() + within
        got: list[str] = []
        while len(got) < len(references):
            left = deadline - time.monotonic()
            try:
                result = await asyncio.wait_for(self.queue.get(), timeout=max(left, 0.01))
            except TimeoutError:
                raise AssertionError(f"received {got}, expected {references}") from None
            reference = str(result["pointsUpdated"]["transaction"]["reference"])
            assert reference not in self.seen, f"{reference} delivered twice"
            self.seen.append(reference)
            if reference not in ignore:
                got.append(reference)
        assert got == references

    async def quiet(self, within: float) -> None:
        with pytest.raises(TimeoutError):
            result = await asyncio.wait_for(self.queue.get(), timeout=within)
            raise AssertionError(f"unexpected update: {result}")


@contextlib.asynccontextmanager
async def subscribed(server: Server, token: str) -> AsyncIterator[Updates]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    transport = WebsocketsTransport(
        url=server.ws,
        init_payload={"authorization": f"Bearer {token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )

    async def listen() -> None:
        async with Client(transport=transport) as session:
            async for result in session.subscribe(POINTS):
                queue.put_nowait(result)

    task = asyncio.create_task(listen())
    try:
        yield Updates(queue)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TransportClosed):
            await task


async def until_live(run: Run, updates: Updates) -> set[str]:
    """Purchases of Ann's on B until one reaches the subscriber on A: from then on the
    subscription is registered (and hints cross processes). Returns the probes."""
    probes: set[str] = set()
    for n in range(50):
        probe = f"probe-{n}"
        probes.add(probe)
        await run.buy(run.b, "Ann", probe, 1)
        try:
            await updates.expect([probe], within=0.3, ignore=probes - {probe})
            return probes
        except AssertionError:
            continue
    raise AssertionError("the subscription never went live")


# ---------------------------------------------------------------- the test


async def test_redis_stopped_mid_run_then_back_empty(run: Run) -> None:
    a, b = run.a, run.b
    async with subscribed(a, run.tokens["Ann"]) as updates:
        probes = await until_live(run, updates)  # probes delivered late are skipped below

        # -- Redis up: earning and redeeming on both processes
        await run.buy(a, "Ann", "up-ann", 100)
        await run.buy(b, "Bob", "up-bob", 80)
        await run.buy(a, "Cy", "up-cy", 60)
        await run.buy(b, "Dee", "up-dee", 40)
        await run.buy(a, "Eve", "up-eve", 20)
        await run.redeem(a, "Bob", "up-bob-1")
        await run.redeem(b, "Cy", "up-cy-1")
        await updates.expect(["up-ann"], within=5, ignore=probes)
        await run.balances_are_right()
        await run.boards_agree(within=5)
        assert run.redis_exists(f"{run.prefix}lb:built:ALL_TIME")

        # -- Redis killed
        run.redis.kill()
        await run.until_ready_is(503, within=5)  # /healthz stays 200 (checked there)

        # every write commits, at once, on both processes
        await run.buy(a, "Ann", "down-a-1", 50)
        await updates.expect(["down-a-1"], within=3, ignore=probes)  # the local bus
        await run.buy(b, "Bob", "down-bob", 100)
        await run.buy(a, "Dee", "down-dee", 150)
        await run.buy(b, "Eve", "down-eve", 30)
        await run.redeem(a, "Bob", "down-bob-1")
        await run.redeem(b, "Eve", "down-eve-1")
        await run.redeem(b, "Dee", "down-dee-1")
        await run.buy(a, "Ann", "down-a-2", 5)
        await updates.expect(["down-a-2"], within=3, ignore=probes)
        # made on B: no way to reach A's subscriber now; it must arrive once Redis is back
        await run.buy(b, "Ann", "down-b-1", 7)
        await run.balances_are_right()

        # the boards answer from PostgreSQL, equal to the database's ranking
        await run.boards_agree(within=5)
        await run.my_rank_agrees(a, "Dee")
        await run.my_rank_agrees(b, "Bob")
        assert await run.ready(a) == 503
        assert await run.ready(b) == 503

        # -- Redis back, on the same port, with none of its data
        run.redis.start()
        assert not run.redis_exists(f"{run.prefix}lb:built:ALL_TIME")
        await run.until_ready_is(200, within=10)

        # hints cross processes again; the one kept during the outage comes first
        await run.buy(b, "Ann", "back-b-1", 3)
        await updates.expect(["down-b-1", "back-b-1"], within=10, ignore=probes)
        await updates.quiet(0.5)

        # the boards come back from Redis, rebuilt on their own, equal to the database's
        deadline = time.monotonic() + 10
        while not run.redis_exists(f"{run.prefix}lb:built:ALL_TIME"):
            assert time.monotonic() < deadline, "the board was not rebuilt in Redis"
            await run.served(a, None)
            await asyncio.sleep(0.1)
        await run.boards_agree(within=5)
        await run.my_rank_agrees(b, "Dee")

        # served from Redis indeed: a score changed there (Cy did nothing during the
        # outage, so no pending write touches it) shows on both processes ...
        client = run.redis.client()
        try:
            board_key = f"{run.prefix}lb:board:ALL_TIME"
            client.zincrby(board_key, 1000, encode_member(run.ids["Cy"]))
        finally:
            client.close()
        for server in (a, b):
            top = (await run.served(server, None))["entries"][0]
            assert top == {"rank": 1, "displayName": "Cy", "points": run.earned["Cy"] + 1000}

        # ... until `laurel leaderboards rebuild` puts the database's ranking back
        command = await asyncio.create_subprocess_exec(
            str(LAUREL),
            "leaderboards",
            "rebuild",
            env=a.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(command.communicate(), timeout=30)
        assert command.returncode == 0, err.decode()
        assert "ALL_TIME: 5 member(s) ranked" in out.decode()
        for server in (a, b):
            for viewer in (None, "Dee"):
                assert await run.served(server, viewer) == await run.expected(viewer)
        await run.balances_are_right()
