"""Leaderboard privacy over HTTP: `leaderboard` and `me { rank }` for a member that opted out
(off every board and out of `totalRanked`, its own rank still answering) and for an erased
member (off every board, no rank). The in-process app on both backends without Redis (the
database ranks), and on PostgreSQL with real Redis (the boards are sorted sets).

The flags are set on the row and announced as a commit does (`events.touched` on the app's
own sessions, whose commits reach `Leaderboards.mark_dirty` through its bus); the mutations
that set them are tested with the member edits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.app import AppState, create_app
from api.settings import Settings
from models import KeyRole, Member
from schema.ids import encode_id
from services.clock import ManualClock
from services.events import touched
from services.leaderboards import Leaderboards, Period, encode_member
from tests.conftest import JWT_SECRET, Api
from tests.live.conftest import REDIS_URL
from tests.live.test_leaderboards_api import (
    MY_RANKS,
    Cast,
    call,
    cast_of,
    data,
    ranks,
    standings,
)

ADMIN_RANKS = """query($id: ID!) { member(id: $id) {
    allTime: rank { rank points } monthly: rank(period: MONTHLY) { rank points }
    weekly: rank(period: WEEKLY) { rank points } } }"""
PERIODS = ("ALL_TIME", "MONTHLY", "WEEKLY")


async def set_listing(
    sessions: async_sessionmaker[AsyncSession],
    member_id: int,
    *,
    opted_out: bool | None = None,
    erased_by: ManualClock | None = None,
) -> None:
    values: dict[str, Any] = {}
    if opted_out is not None:
        values["leaderboard_opt_out"] = opted_out
    if erased_by is not None:
        values |= {"erased_at": erased_by.now(), "display_name": "Erased member"}
    async with sessions.begin() as session:
        await session.execute(update(Member).where(Member.id == member_id).values(**values))
        touched(session, [member_id])


async def admin_ranks(cast: Cast, admin: str, name: str) -> dict[str, Any]:
    variables = {"id": encode_id("Member", cast.ids[name])}
    member: dict[str, Any] = data(await call(cast.api, ADMIN_RANKS, variables, token=admin))[
        "member"
    ]
    return member


async def assert_bob_hidden(cast: Cast) -> None:
    """Ann 300, Bob 200 (opted out), Cy 200, Dee 100: the board closes the gap below Bob,
    and Bob's own rank is where he would stand."""
    for period in PERIODS:
        bob = await cast.board(period, viewer="Bob")
        assert ranks(bob) == [(1, "Ann", 300), (2, "Cy", 200), (3, "Dee", 100)]
        assert not any(entry["isMe"] for entry in bob["entries"])
        assert bob["me"] == {"rank": 2, "displayName": "Bob", "points": 200, "isMe": True}
        assert bob["totalRanked"] == 3
        dee = await cast.board(period, viewer="Dee")
        assert dee["me"] == {"rank": 3, "displayName": "Dee", "points": 100, "isMe": True}
        anonymous = await cast.board(period, first=100)
        assert "Bob" not in {entry["displayName"] for entry in anonymous["entries"]}
    mine = data(await call(cast.api, MY_RANKS, token=cast.token("Bob")))["me"]
    assert mine["allTime"] == {"rank": 2, "displayName": "Bob", "points": 200, "isMe": True}
    assert mine["monthly"] == mine["weekly"] == {"rank": 2, "points": 200}


async def assert_cy_erased(cast: Cast, admin: str) -> None:
    for period in PERIODS:
        board = await cast.board(period, first=100, viewer="Ann")
        assert ranks(board) == [(1, "Ann", 300), (2, "Dee", 100)]
        assert board["totalRanked"] == 2
        assert "Erased member" not in str(board)
    cy = await admin_ranks(cast, admin, "Cy")
    assert cy == {"allTime": None, "monthly": None, "weekly": None}


# ---------------------------------------------------------------- the database ranks


async def test_an_opted_out_member_is_off_the_board_and_still_sees_its_rank(api: Api) -> None:
    cast = await cast_of(api)
    await standings(cast)
    admin = await api.key(KeyRole.ADMIN)

    await set_listing(api.sessions, cast.ids["Bob"], opted_out=True)
    await assert_bob_hidden(cast)
    assert await admin_ranks(cast, admin, "Bob") == {
        "allTime": {"rank": 2, "points": 200},
        "monthly": {"rank": 2, "points": 200},
        "weekly": {"rank": 2, "points": 200},
    }

    await set_listing(api.sessions, cast.ids["Bob"], opted_out=False)
    board = await cast.board(viewer="Bob")
    assert ranks(board) == [(1, "Ann", 300), (2, "Bob", 200), (2, "Cy", 200), (4, "Dee", 100)]
    assert board["totalRanked"] == 4 and board["me"]["rank"] == 2


async def test_an_erased_member_is_on_no_board_and_has_no_rank(api: Api) -> None:
    cast = await cast_of(api)
    await standings(cast)
    admin = await api.key(KeyRole.ADMIN)
    await set_listing(api.sessions, cast.ids["Bob"], opted_out=True)

    await set_listing(api.sessions, cast.ids["Cy"], erased_by=api.clock)
    await assert_cy_erased(cast, admin)
    assert (await admin_ranks(cast, admin, "Bob"))["allTime"] == {"rank": 2, "points": 200}


# ---------------------------------------------------------------- Redis ranks


@pytest.fixture
async def redis_api(pg: AsyncEngine, clock: ManualClock) -> AsyncIterator[Api]:
    """The app on PostgreSQL with Redis under a key prefix of its own (deleted afterwards).
    Its lifespan does not run: the test writes the boards with `flush()` when it chooses."""
    prefix = f"laureltest:{uuid4().hex}:"
    settings = Settings(
        database_url=pg.url.render_as_string(hide_password=False),
        jwt_secret=SecretStr(JWT_SECRET),
        redis_url=REDIS_URL,
        redis_prefix=prefix,
        sweep_interval_seconds=0,
        _env_file=None,  # type: ignore[call-arg]
    )
    app = create_app(settings, clock=clock)
    state: AppState = app.state.laurel
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    try:
        # The app's own sessions: their commits are announced to the leaderboards.
        yield Api(client=client, sessions=state.runtime.sessions, clock=clock, app=app)
    finally:
        await client.aclose()
        await app.state.rate_limits.settle()  # the leases of calls served, sent
        boards = state.runtime.leaderboards
        assert boards is not None and boards.store is not None
        redis: Redis = boards.store.redis
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
        await state.engine.dispose()


def leaderboards_of(api: Api) -> Leaderboards:
    boards = api.app.state.laurel.runtime.leaderboards
    assert isinstance(boards, Leaderboards) and boards.store is not None
    return boards


async def test_redis_boards_follow_opt_out_opt_in_and_erasure_over_http(
    redis_api: Api,
) -> None:
    api = redis_api
    boards = leaderboards_of(api)
    store = boards.store
    assert store is not None
    cast = await cast_of(api)
    await standings(cast)
    admin = await api.key(KeyRole.ADMIN)
    assert await boards.flush()
    assert ranks(await cast.board(viewer="Bob"))[1] == (2, "Bob", 200)  # built on first read
    now = api.clock.now()
    bob = encode_member(cast.ids["Bob"])

    # Bob opts out: the commit is announced, the writer runs, every Redis board drops him
    await set_listing(api.sessions, cast.ids["Bob"], opted_out=True)
    assert boards.pending == 1
    assert await boards.flush()
    for period in Period:
        await cast.board(period.value)  # builds the period's board if it is not yet
        assert await store.redis.zscore(store.keys(period, now).board, bob) is None
        assert await store.redis.zcard(store.keys(period, now).board) == 3
    await assert_bob_hidden(cast)

    # He opts back in: back everywhere with his exact points
    await set_listing(api.sessions, cast.ids["Bob"], opted_out=False)
    assert await boards.flush()
    for label in PERIODS:
        board = await cast.board(label, viewer="Bob")
        assert ranks(board) == [(1, "Ann", 300), (2, "Bob", 200), (2, "Cy", 200), (4, "Dee", 100)]
        assert board["me"]["rank"] == 2 and board["totalRanked"] == 4

    # Cy is erased (Bob opted out again): gone from every board, her rank null
    await set_listing(api.sessions, cast.ids["Bob"], opted_out=True)
    await set_listing(api.sessions, cast.ids["Cy"], erased_by=api.clock)
    assert await boards.flush()
    cy = encode_member(cast.ids["Cy"])
    for period in Period:
        keys = store.keys(period, now)
        assert await store.redis.zscore(keys.board, cy) is None
        assert await store.redis.zscore(keys.unlisted, cy) is None
    assert not await store.redis.hexists(store.names_key, cy)
    await assert_cy_erased(cast, admin)
    board = await cast.board(viewer="Bob")
    assert board["me"] == {"rank": 2, "displayName": "Bob", "points": 200, "isMe": True}
